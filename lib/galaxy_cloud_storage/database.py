"""Creating and upgrading the plugin's tables with its own Alembic migrations.

Galaxy's own rule is followed: a database without the plugin's tables gets them at start-up; an
existing one behind the newest revision is upgraded only when galaxy.yml sets
``database_auto_migrate``, otherwise start-up stops and names the command that upgrades it.
"""

import logging
from typing import Optional

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from .model import VERSION_TABLE

log = logging.getLogger(__name__)

UPGRADE_COMMAND = "galaxy-cloud-storage-db -c <galaxy.yml> upgrade"
# any constant: serializes concurrent upgrades from several gunicorn workers on PostgreSQL
_ADVISORY_LOCK_ID = 0x67637364


class DatabaseNotCurrent(Exception):
    pass


def alembic_config(url: Optional[str] = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "galaxy_cloud_storage:migrations")
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head
    return head


def current_revision(connection: Connection) -> Optional[str]:
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(connection: Connection, revision: str = "head") -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def ensure_database(engine: Engine, auto_migrate: bool) -> str:
    """Bring the plugin's tables to the newest revision (see module doc); returns it."""
    head = head_revision()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
        current = current_revision(connection)
        if current == head:
            return head
        if current is not None and not auto_migrate:
            raise DatabaseNotCurrent(
                f"The cloud storage plugin's tables are at revision {current}, the plugin needs {head}. "
                f"Run `{UPGRADE_COMMAND}` or set database_auto_migrate: true in galaxy.yml."
            )
        log.info("Upgrading the cloud storage plugin's tables from %s to %s", current or "nothing", head)
        upgrade(connection)
    return head

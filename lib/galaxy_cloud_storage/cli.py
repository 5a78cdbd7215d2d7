"""``galaxy-cloud-storage-db``: create, upgrade or inspect the plugin's tables.

Reads the database URL the way Galaxy does (``database_connection`` in galaxy.yml, or the
``GALAXY_CONFIG_DATABASE_CONNECTION`` environment variable), or takes ``--database-url``.
"""

import argparse
import os
import sys
from typing import Optional

import yaml
from alembic import command
from sqlalchemy import create_engine

from . import database


def database_url(galaxy_config_file: Optional[str], explicit: Optional[str]) -> str:
    # Galaxy's order (galaxy.util.properties.load_app_properties): the OVERRIDE variable, then
    # galaxy.yml, then the plain variable.
    url = explicit or os.environ.get("GALAXY_CONFIG_OVERRIDE_DATABASE_CONNECTION")
    if not url and galaxy_config_file:
        try:
            with open(galaxy_config_file) as fh:
                url = ((yaml.safe_load(fh) or {}).get("galaxy") or {}).get("database_connection")
        except OSError as e:
            raise SystemExit(f"Cannot read {galaxy_config_file}: {e}") from e
    url = url or os.environ.get("GALAXY_CONFIG_DATABASE_CONNECTION")
    if not url:
        raise SystemExit("No database: pass --database-url, or -c with a galaxy.yml that sets database_connection")
    return url


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="galaxy-cloud-storage-db", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config-file", default=os.environ.get("GALAXY_CONFIG_FILE"), help="galaxy.yml")
    parser.add_argument("--database-url", help="SQLAlchemy URL of Galaxy's database")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("upgrade", help="create or upgrade the plugin's tables to the newest revision")
    sub.add_parser("current", help="print the revision the database is at, and the newest one")
    sub.add_parser("sql", help="print the SQL of a full upgrade without running it (for a DBA)")
    down = sub.add_parser("downgrade", help="downgrade to a revision ('base' removes the plugin's tables)")
    down.add_argument("revision")
    args = parser.parse_args(argv)

    url = database_url(args.config_file, args.database_url)
    if args.action == "sql":
        command.upgrade(database.alembic_config(url), "head", sql=True)
        return 0
    engine = create_engine(url)
    with engine.begin() as connection:
        if args.action == "upgrade":
            database.upgrade(connection)
        elif args.action == "downgrade":
            config = database.alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, args.revision)
        current = database.current_revision(connection)
    print(f"current: {current or 'none'}  newest: {database.head_revision()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def tool_conf_main(argv: Optional[list[str]] = None) -> int:
    """``galaxy-cloud-storage-tool-conf [FILE]``: write the tool_conf entry for the plugin's tools."""
    from .tools import tool_conf_xml

    parser = argparse.ArgumentParser(prog="galaxy-cloud-storage-tool-conf", description=tool_conf_main.__doc__)
    parser.add_argument("file", nargs="?", help="where to write it (default: standard output)")
    args = parser.parse_args(argv)
    if args.file:
        with open(args.file, "w") as fh:
            fh.write(tool_conf_xml())
    else:
        sys.stdout.write(tool_conf_xml())
    return 0

"""Alembic environment of the plugin's own migrations (see galaxy_cloud_storage.database)."""

from alembic import context

from galaxy_cloud_storage.model import Base, VERSION_TABLE

config = context.config


def run_offline() -> None:
    # ``--sql``: print the DDL for a DBA instead of running it.
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes["connection"]
    context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

"""The plugin's own migrations (galaxy_cloud_storage.database) and its CLI (galaxy_cloud_storage.cli)."""

import pytest
from sqlalchemy import create_engine, inspect, text

from galaxy_cloud_storage import cli
from galaxy_cloud_storage.database import DatabaseNotCurrent, ensure_database, head_revision, UPGRADE_COMMAND
from galaxy_cloud_storage.model import VERSION_TABLE

TABLE = "cloud_storage_authz"
GALAXY_TABLES = {"galaxy_user", "oidc_user_authnz_tokens", "job", "alembic_version"}
GALAXY_REVISION = "c63848676caf"  # stands for Galaxy's own head; must never change


@pytest.fixture
def url(tmp_path):
    """A SQLite file holding just the Galaxy tables the plugin's foreign keys point at."""
    url = f"sqlite:///{tmp_path / 'galaxy.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("CREATE TABLE galaxy_user (id INTEGER PRIMARY KEY)"))
        c.execute(text("CREATE TABLE oidc_user_authnz_tokens (id INTEGER PRIMARY KEY)"))
        c.execute(text("CREATE TABLE job (id INTEGER PRIMARY KEY)"))
        c.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        c.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": GALAXY_REVISION})
        c.execute(text("INSERT INTO galaxy_user (id) VALUES (1)"))
    engine.dispose()
    return url


@pytest.fixture
def engine(url):
    engine = create_engine(url)
    yield engine
    engine.dispose()


def scalars(engine, sql):
    with engine.connect() as c:
        return list(c.execute(text(sql)).scalars())


def table_sql(engine):
    return scalars(engine, f"SELECT sql FROM sqlite_master WHERE tbl_name = '{TABLE}' ORDER BY name")


def galaxy_version(engine):
    return scalars(engine, "SELECT version_num FROM alembic_version")


# -- ensure_database -------------------------------------------------------------------------------


def test_creates_table_and_own_version_table(engine):
    assert ensure_database(engine, auto_migrate=False) == head_revision()
    assert {TABLE, VERSION_TABLE} <= set(inspect(engine).get_table_names())
    assert scalars(engine, f"SELECT version_num FROM {VERSION_TABLE}") == [head_revision()]
    assert galaxy_version(engine) == [GALAXY_REVISION]


def test_galaxy_alembic_version_is_never_created(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'bare.sqlite'}")
    with engine.begin() as c:
        c.execute(text("CREATE TABLE galaxy_user (id INTEGER PRIMARY KEY)"))
        c.execute(text("CREATE TABLE oidc_user_authnz_tokens (id INTEGER PRIMARY KEY)"))
        c.execute(text("CREATE TABLE job (id INTEGER PRIMARY KEY)"))
    ensure_database(engine, auto_migrate=True)
    assert "alembic_version" not in inspect(engine).get_table_names()
    engine.dispose()


def test_second_run_is_a_no_op(engine):
    ensure_database(engine, auto_migrate=False)
    with engine.begin() as c:
        c.execute(
            text(
                f"INSERT INTO {TABLE} (user_id, provider, config, vaulted_fields, config_digest, create_time, "
                "update_time, last_activity) "
                "VALUES (1, 'aws', '{}', '[]', 'd', '2026-01-01', '2026-01-01', '2026-01-01')"
            )
        )
    schema = table_sql(engine)
    for auto_migrate in (False, True):
        assert ensure_database(engine, auto_migrate=auto_migrate) == head_revision()
    assert table_sql(engine) == schema
    assert scalars(engine, f"SELECT provider FROM {TABLE}") == ["aws"]
    assert scalars(engine, f"SELECT version_num FROM {VERSION_TABLE}") == [head_revision()]
    assert galaxy_version(engine) == [GALAXY_REVISION]


def test_behind_head_without_auto_migrate_raises(engine):
    ensure_database(engine, auto_migrate=False)
    with engine.begin() as c:
        c.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'feedfacecafe'"))
    schema = table_sql(engine)
    with pytest.raises(DatabaseNotCurrent) as e:
        ensure_database(engine, auto_migrate=False)
    assert "feedfacecafe" in str(e.value) and head_revision() in str(e.value)
    assert UPGRADE_COMMAND in str(e.value) and "database_auto_migrate" in str(e.value)
    # nothing was attempted
    assert scalars(engine, f"SELECT version_num FROM {VERSION_TABLE}") == ["feedfacecafe"]
    assert table_sql(engine) == schema


def test_foreign_keys_cascade_to_galaxy_tables(engine):
    ensure_database(engine, auto_migrate=False)
    foreign_keys = {
        tuple(fk["constrained_columns"]): (fk["referred_table"], fk["referred_columns"], fk["options"].get("ondelete"))
        for fk in inspect(engine).get_foreign_keys(TABLE)
    }
    assert foreign_keys == {
        ("user_id",): ("galaxy_user", ["id"], "CASCADE"),
        ("authn_id",): ("oidc_user_authnz_tokens", ["id"], "CASCADE"),
    }
    columns = {c["name"]: c for c in inspect(engine).get_columns(TABLE)}
    assert not columns["user_id"]["nullable"] and columns["authn_id"]["nullable"]
    indexed = {tuple(i["column_names"]) for i in inspect(engine).get_indexes(TABLE)}
    assert {("user_id",), ("authn_id",), ("config_digest",)} <= indexed


# -- the CLI --------------------------------------------------------------------------------------------


def test_cli_upgrade_then_current(url, engine, capsys):
    assert cli.main(["--database-url", url, "current"]) == 0
    assert capsys.readouterr().out.strip() == f"current: none  newest: {head_revision()}"
    assert TABLE not in inspect(engine).get_table_names()

    assert cli.main(["--database-url", url, "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == f"current: {head_revision()}  newest: {head_revision()}"
    assert TABLE in inspect(engine).get_table_names()

    assert cli.main(["--database-url", url, "current"]) == 0
    assert f"current: {head_revision()}" in capsys.readouterr().out
    assert galaxy_version(engine) == [GALAXY_REVISION]


def test_cli_downgrade_to_base_keeps_galaxy_tables(url, engine, capsys):
    ensure_database(engine, auto_migrate=False)
    assert cli.main(["--database-url", url, "downgrade", "base"]) == 0
    assert "current: none" in capsys.readouterr().out
    tables = set(inspect(engine).get_table_names())
    assert TABLE not in tables
    assert GALAXY_TABLES <= tables
    assert scalars(engine, "SELECT id FROM galaxy_user") == [1]
    assert galaxy_version(engine) == [GALAXY_REVISION]
    # and it comes back
    assert ensure_database(engine, auto_migrate=False) == head_revision()
    assert TABLE in inspect(engine).get_table_names()


def test_cli_sql_prints_ddl_without_running_it(url, engine, capsys):
    assert cli.main(["--database-url", url, "sql"]) == 0
    out = capsys.readouterr().out
    assert f"CREATE TABLE {TABLE}" in out
    assert f"CREATE TABLE {VERSION_TABLE}" in out
    assert "ON DELETE CASCADE" in out
    assert head_revision() in out
    assert "CREATE TABLE alembic_version" not in out
    assert TABLE not in inspect(engine).get_table_names()


def test_cli_reads_database_connection_from_galaxy_yml(url, engine, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GALAXY_CONFIG_OVERRIDE_DATABASE_CONNECTION", raising=False)
    monkeypatch.setenv("GALAXY_CONFIG_DATABASE_CONNECTION", "sqlite:////nonexistent/dir/db.sqlite")  # the file wins
    galaxy_yml = tmp_path / "galaxy.yml"
    galaxy_yml.write_text(f"gravity:\n  galaxy_root: /srv/galaxy\ngalaxy:\n  database_connection: {url}\n")
    assert cli.main(["-c", str(galaxy_yml), "upgrade"]) == 0
    assert TABLE in inspect(engine).get_table_names()
    # GALAXY_CONFIG_FILE stands in for -c, as in Galaxy
    monkeypatch.setenv("GALAXY_CONFIG_FILE", str(galaxy_yml))
    assert cli.main(["current"]) == 0
    assert f"current: {head_revision()}" in capsys.readouterr().out.splitlines()[-1]


def test_cli_database_url_precedence_is_galaxys(tmp_path, monkeypatch):
    galaxy_yml = str(tmp_path / "galaxy.yml")
    (tmp_path / "galaxy.yml").write_text("galaxy:\n  database_connection: sqlite:///from_file\n")
    monkeypatch.setenv("GALAXY_CONFIG_DATABASE_CONNECTION", "sqlite:///from_env")
    monkeypatch.setenv("GALAXY_CONFIG_OVERRIDE_DATABASE_CONNECTION", "sqlite:///from_override")
    assert cli.database_url(galaxy_yml, "sqlite:///explicit") == "sqlite:///explicit"
    assert cli.database_url(galaxy_yml, None) == "sqlite:///from_override"
    monkeypatch.delenv("GALAXY_CONFIG_OVERRIDE_DATABASE_CONNECTION")
    assert cli.database_url(galaxy_yml, None) == "sqlite:///from_file"  # the file beats the plain variable
    assert cli.database_url(None, None) == "sqlite:///from_env"


def test_cli_unreadable_galaxy_yml_exits_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("GALAXY_CONFIG_OVERRIDE_DATABASE_CONNECTION", raising=False)
    with pytest.raises(SystemExit) as e:
        cli.main(["-c", str(tmp_path / "missing.yml"), "current"])
    assert "Cannot read" in str(e.value.code) and "missing.yml" in str(e.value.code)


@pytest.mark.parametrize("galaxy_yml_text", [None, "", "galaxy:\n  admin_users: a@b.c\n", "gravity: {}\n"])
def test_cli_without_database_exits_clearly(tmp_path, monkeypatch, galaxy_yml_text):
    monkeypatch.delenv("GALAXY_CONFIG_DATABASE_CONNECTION", raising=False)
    monkeypatch.delenv("GALAXY_CONFIG_OVERRIDE_DATABASE_CONNECTION", raising=False)
    monkeypatch.delenv("GALAXY_CONFIG_FILE", raising=False)
    argv = ["upgrade"]
    if galaxy_yml_text is not None:
        (tmp_path / "galaxy.yml").write_text(galaxy_yml_text)
        argv = ["-c", str(tmp_path / "galaxy.yml"), *argv]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert "No database" in str(e.value.code)

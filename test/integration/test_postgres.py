"""The plugin on PostgreSQL, the database of most production Galaxies (a cluster of its own, see
galaxy_cloud_storage_testing/postgres.py).

First the plugin's migrations, on a database that holds Galaxy 26.1's own tables (made by Galaxy's
own code): what they create, that a second run changes nothing, that a downgrade removes the
plugin's tables only, and that several processes upgrading at once (gunicorn workers starting
together) end in one schema. A DDL event trigger records every CREATE, ALTER and DROP, so "changes
nothing" is the server's word, not an inference. Then one embedded Galaxy on PostgreSQL with the
four clouds' local servers: the authorization API, and a get and a send on each cloud.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from base import CloudStorageTestCase
from galaxy.model import User
from galaxy.model.migrations import DatabaseConfig, verify_databases_via_script
from galaxy_test.base.populators import DatasetPopulator
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from galaxy_cloud_storage import cli
from galaxy_cloud_storage.database import ensure_database, head_revision
from galaxy_cloud_storage.model import Base, VERSION_TABLE
from galaxy_cloud_storage_testing.local_clouds import PROVIDERS, start_cloud
from galaxy_cloud_storage_testing.postgres import PostgresCluster

pytestmark = pytest.mark.postgres

TABLE = "cloud_storage_authz"
# whatever the plugin's migrations hold today, and the version table they keep
MODEL_TABLES = set(Base.metadata.tables)
PLUGIN_TABLES = MODEL_TABLES | {VERSION_TABLE}
GALAXY_TEMPLATE = "galaxy_template"
CONCURRENT_UPGRADES = 4

# Every DDL command and every dropped object, as PostgreSQL reports them, in a schema of its own.
DDL_AUDIT = """
CREATE SCHEMA ddl_audit;
CREATE TABLE ddl_audit.log (id serial PRIMARY KEY, tag text NOT NULL, object text);
CREATE FUNCTION ddl_audit.on_command() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT command_tag, object_identity FROM pg_event_trigger_ddl_commands() LOOP
    INSERT INTO ddl_audit.log (tag, object) VALUES (r.command_tag, r.object_identity);
  END LOOP;
END $$;
CREATE FUNCTION ddl_audit.on_drop() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT object_identity FROM pg_event_trigger_dropped_objects() LOOP
    INSERT INTO ddl_audit.log (tag, object) VALUES (TG_TAG, r.object_identity);
  END LOOP;
END $$;
CREATE EVENT TRIGGER ddl_audit_command ON ddl_command_end EXECUTE FUNCTION ddl_audit.on_command();
CREATE EVENT TRIGGER ddl_audit_drop ON sql_drop EXECUTE FUNCTION ddl_audit.on_drop();
"""

# The public schema as the catalogue describes it: tables and columns, indexes, constraints,
# triggers, functions, sequences and views.
SCHEMA_QUERIES = {
    "columns": "SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default "
    "FROM information_schema.columns WHERE table_schema = 'public'",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE connamespace = 'public'::regnamespace",
    "triggers": "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal",
    "functions": "SELECT proname, md5(prosrc) FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
    "relations": "SELECT relname, relkind::text, '' FROM pg_class WHERE relnamespace = 'public'::regnamespace",
}

CONCURRENT_UPGRADE_SCRIPT = """
import os, sys, time
from sqlalchemy import create_engine
from galaxy_cloud_storage.database import ensure_database
url, ready, go = sys.argv[1:]
engine = create_engine(url)
engine.connect().close()
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
print(ensure_database(engine, auto_migrate=False))
"""


# -- the cluster and a database with Galaxy's tables ------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    directory = tempfile.mkdtemp(prefix="gcs-postgres-")
    cluster = PostgresCluster(directory).start()
    try:
        # Galaxy's own start-up code for an empty database: its tables, triggers and alembic stamps.
        template_url = cluster.create_database(GALAXY_TEMPLATE)
        galaxy = DatabaseConfig(template_url, None, None)
        verify_databases_via_script(galaxy, galaxy, is_auto_migrate=False)
        engine = create_engine(template_url)
        with engine.begin() as connection:
            connection.execute(text(DDL_AUDIT))
        engine.dispose()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def url(cluster, request):
    return cluster.create_database(request.node.name.lower()[:60], template=GALAXY_TEMPLATE)


@pytest.fixture
def engine(url):
    engine = create_engine(url)
    yield engine
    engine.dispose()


def rows(engine, sql, **params):
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql), params)]


def schema(engine) -> dict:
    return {name: set(rows(engine, sql)) for name, sql in SCHEMA_QUERIES.items()}


def is_plugins(row) -> bool:
    return any(name in str(field) for field in row for name in PLUGIN_TABLES)


def galaxy_part(snapshot: dict) -> dict:
    return {name: {row for row in found if not is_plugins(row)} for name, found in snapshot.items()}


def ddl_log(engine) -> list:
    return rows(engine, "SELECT tag, object FROM ddl_audit.log ORDER BY id")


def plugin_tables(engine) -> set:
    return {name for (name,) in rows(engine, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")} & (
        PLUGIN_TABLES
    )


def parts_named_otherwise(engine) -> set:
    """What belongs to the plugin's tables without their names: the triggers PostgreSQL keeps on a
    referenced (Galaxy) table for each foreign key, and the tables' TOAST storage."""
    plugin = sorted(PLUGIN_TABLES)
    triggers = rows(
        engine,
        "SELECT format('%I on %I.%I', t.tgname, n.nspname, r.relname) FROM pg_trigger t "
        "JOIN pg_constraint c ON t.tgconstraint = c.oid JOIN pg_class r ON t.tgrelid = r.oid "
        "JOIN pg_namespace n ON r.relnamespace = n.oid "
        "WHERE c.conrelid::regclass::text = ANY(:plugin) AND NOT r.relname = ANY(:plugin)",
        plugin=plugin,
    )
    toast = rows(
        engine,
        "SELECT 'pg_toast.' || t.relname FROM pg_class c JOIN pg_class t ON c.reltoastrelid = t.oid "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(:plugin)",
        plugin=sorted(MODEL_TABLES),
    )
    return {identity for (identity,) in triggers} | {f"{name}{end}" for (name,) in toast for end in ("", "_index")}


def galaxy_revisions(engine) -> list:
    return rows(engine, "SELECT version_num FROM alembic_version ORDER BY 1")


def add_galaxy_user(engine, email: str) -> int:
    with Session(engine) as session:
        user = User(email=email, password="not-a-real-hash")
        session.add(user)
        session.commit()
        return user.id


def add_authz(engine, user_id: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                f"INSERT INTO {TABLE} (user_id, provider, config, vaulted_fields, config_digest, create_time, "
                "update_time, last_activity) VALUES (:user, 'aws', '{}', '[]', 'd', now(), now(), now())"
            ),
            {"user": user_id},
        )


# -- the migrations -------------------------------------------------------------------------------


def test_upgrade_rerun_and_downgrade_leave_galaxys_schema_alone(url, engine, capsys):
    galaxy_before, revisions_before = schema(engine), galaxy_revisions(engine)
    assert len(galaxy_before["columns"]) > 1000 and len(revisions_before) == 2  # Galaxy's model and its install model
    assert plugin_tables(engine) == set() and ddl_log(engine) == []
    keeper = add_galaxy_user(engine, "keeper@example.org")

    assert cli.main(["--database-url", url, "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == f"current: {head_revision()}  newest: {head_revision()}"
    created = ddl_log(engine)
    assert plugin_tables(engine) == PLUGIN_TABLES
    assert {obj for tag, obj in created if tag == "CREATE TABLE"} == {f"public.{name}" for name in PLUGIN_TABLES}
    assert all(is_plugins((obj,)) for _, obj in created), created
    assert rows(engine, f"SELECT version_num FROM {VERSION_TABLE}") == [(head_revision(),)]
    after_upgrade = schema(engine)
    assert galaxy_part(after_upgrade) == galaxy_before
    assert galaxy_revisions(engine) == revisions_before
    # The foreign keys work on PostgreSQL: Galaxy deleting a user takes its authorizations along.
    leaver = add_galaxy_user(engine, "leaver@example.org")
    add_authz(engine, keeper)
    add_authz(engine, leaver)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM galaxy_user WHERE id = :id"), {"id": leaver})
    assert rows(engine, f"SELECT user_id FROM {TABLE}") == [(keeper,)]

    # Again, as Galaxy's start-up and as the command: nothing to do, and nothing done.
    assert ensure_database(engine, auto_migrate=False) == head_revision()
    assert ensure_database(engine, auto_migrate=True) == head_revision()
    assert cli.main(["--database-url", url, "upgrade"]) == 0
    assert ddl_log(engine) == created
    assert schema(engine) == after_upgrade
    assert rows(engine, f"SELECT version_num FROM {VERSION_TABLE}") == [(head_revision(),)]

    named_otherwise = parts_named_otherwise(engine)
    assert any("galaxy_user" in part for part in named_otherwise)  # a foreign key's trigger
    assert cli.main(["--database-url", url, "downgrade", "base"]) == 0
    assert "current: none" in capsys.readouterr().out.splitlines()[-1]
    dropped = ddl_log(engine)[len(created) :]
    assert {f"public.{name}" for name in MODEL_TABLES} <= {obj for _, obj in dropped}
    assert all(tag == "DROP TABLE" for tag, _ in dropped), dropped
    # What it drops is the plugin's: named after its tables, or parts of them named otherwise.
    assert {obj for _, obj in dropped if not any(name in obj for name in MODEL_TABLES)} == named_otherwise
    # Alembic keeps its (now empty) version table: the plugin's, and the only trace left.
    assert plugin_tables(engine) == {VERSION_TABLE}
    assert rows(engine, f"SELECT * FROM {VERSION_TABLE}") == []
    assert schema(engine) == {
        name: galaxy_before[name] | {row for row in found if VERSION_TABLE in str(row)}
        for name, found in after_upgrade.items()
    }
    assert galaxy_revisions(engine) == revisions_before
    assert rows(engine, "SELECT email FROM galaxy_user") == [("keeper@example.org",)]


def test_concurrent_upgrades_end_in_one_schema(url, engine, tmp_path):
    galaxy_before = schema(engine)
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_UPGRADE_SCRIPT, url, str(tmp_path / f"ready-{i}"), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(CONCURRENT_UPGRADES)
    ]
    try:
        while not all((tmp_path / f"ready-{i}").exists() for i in range(CONCURRENT_UPGRADES)):
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
            time.sleep(0.05)
        go.touch()  # all at once, each with its connection open
        results = [p.communicate(timeout=120) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err
        assert out.strip() == head_revision()
    created_tables = sorted(obj for tag, obj in ddl_log(engine) if tag == "CREATE TABLE")
    assert created_tables == sorted(f"public.{name}" for name in PLUGIN_TABLES)  # each once
    assert rows(engine, f"SELECT version_num FROM {VERSION_TABLE}") == [(head_revision(),)]
    assert plugin_tables(engine) == PLUGIN_TABLES
    after = galaxy_part(schema(engine))
    assert after == galaxy_before


# -- a Galaxy on PostgreSQL with the four clouds ----------------------------------------------------


class TestGalaxyOnPostgres(CloudStorageTestCase):
    """One Galaxy on PostgreSQL holding the four clouds' local servers as providers (stored secrets)."""

    @classmethod
    def setUpClass(cls):
        cls.work_dir = tempfile.mkdtemp(prefix="gcs-postgres-galaxy-")
        cls.postgres_dir = tempfile.mkdtemp(prefix="gcs-postgres-")  # not inside work_dir: see postgres.py
        cls.postgres = PostgresCluster(cls.postgres_dir)
        cls.clouds = {}
        try:
            cls.postgres.start()
            cls.database_url = cls.postgres.create_database("galaxy")
            cls.engine = create_engine(cls.database_url)  # the tests' own look at what Galaxy stored
            with ThreadPoolExecutor(len(PROVIDERS)) as pool:  # side by side: 8 s rather than 25
                starts = [pool.submit(start_cloud, p, os.path.join(cls.work_dir, p)) for p in PROVIDERS]
            failures = [start.exception() for start in starts if start.exception()]
            cls.clouds = {start.result().provider: start.result() for start in starts if not start.exception()}
            if failures:
                raise failures[0]
            super().setUpClass()  # Galaxy, on its port chosen by the base (galaxy_infrastructure_url)
        except BaseException:
            cls._stop_servers()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls._stop_servers()

    @classmethod
    def _stop_servers(cls):
        for cloud in cls.clouds.values():
            cloud.stop()
        if hasattr(cls, "engine"):
            cls.engine.dispose()
        cls.postgres.stop()
        for directory in (cls.work_dir, cls.postgres_dir):
            shutil.rmtree(directory, ignore_errors=True)

    @classmethod
    def handle_galaxy_config_kwds(cls, config):
        super().handle_galaxy_config_kwds(config)
        config["database_connection"] = cls.database_url
        config.pop("install_database_connection", None)  # the tool shed install tables in it too, as by default

    @classmethod
    def plugin_settings(cls) -> dict:
        return {"providers": {provider: cloud.settings for provider, cloud in cls.clouds.items()}}

    def setUp(self):
        super().setUp()
        self.dataset_populator = DatasetPopulator(self.galaxy_interactor)

    def create_authz(self, provider: str, description: str = None) -> dict:
        payload = {"provider": provider, "config": self.clouds[provider].authz_config, "description": description}
        response = self._post("cloud/authz", payload, json=True)
        assert response.status_code == 200, response.text
        return response.json()

    def stored_authz(self, authz_id: str) -> list:
        return rows(
            self.engine,
            f"SELECT provider, config::text, description FROM {TABLE} WHERE id = :id",
            id=self._app.security.decode_id(authz_id),
        )

    def test_galaxy_and_the_plugin_are_on_postgres(self):
        assert self._app.model.engine.dialect.name == "postgresql"
        tables = {name for (name,) in rows(self.engine, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert PLUGIN_TABLES | {"galaxy_user", "job", "history_dataset_association", "tool_shed_repository"} <= tables
        assert rows(self.engine, f"SELECT version_num FROM {VERSION_TABLE}") == [(head_revision(),)]

    def test_authz_create_list_show_update_delete(self):
        # A user of its own: the same config twice is refused, and the transfer test has these.
        with self._different_user("authz-on-postgres@example.org"):
            self.check_authz_api()

    def check_authz_api(self):
        created = {provider: self.create_authz(provider, f"{provider} on postgres") for provider in PROVIDERS}
        listed = {record["id"]: record for record in self._get("cloud/authz").json()}
        assert {record["id"] for record in created.values()} <= set(listed)
        for provider, record in created.items():
            assert listed[record["id"]] == record
            assert self._get(f"cloud/authz/{record['id']}").json() == record
            (stored,) = self.stored_authz(record["id"])
            assert stored[0] == provider and stored[2] == f"{provider} on postgres"
            for secret in self.clouds[provider].secrets:  # in the vault, not in the plugin's table
                assert secret not in stored[1] and secret not in json.dumps(record)

        aws = created["aws"]["id"]
        updated = self._put(f"cloud/authz/{aws}", {"description": "renamed"}, json=True)
        assert updated.status_code == 200, updated.text
        assert updated.json()["description"] == "renamed"
        assert self._get(f"cloud/authz/{aws}").json()["description"] == "renamed"
        assert self.stored_authz(aws)[0][2] == "renamed"

        deleted = self._delete(f"cloud/authz/{aws}")
        assert deleted.status_code == 200, deleted.text
        assert self._get(f"cloud/authz/{aws}").status_code == 404
        assert aws not in {record["id"] for record in self._get("cloud/authz").json()}
        assert self.stored_authz(aws) == []

    def test_get_and_send_on_each_cloud(self):
        history_id = self.dataset_populator.new_history()
        authz = {provider: self.create_authz(provider)["id"] for provider in PROVIDERS}
        sent_bytes = {provider: f"{provider} bytes through PostgreSQL \u00e9\n".encode() for provider in PROVIDERS}
        gets = {}
        for provider, cloud in self.clouds.items():
            cloud.admin.put_object(cloud.bucket, "on-postgres/in.txt", sent_bytes[provider])
            payload = {"history_id": history_id, "authz_id": authz[provider], "bucket": cloud.bucket}
            response = self._post("cloud/storage/get", {**payload, "objects": ["on-postgres/in.txt"]}, json=True)
            assert response.status_code == 200, f"{provider}: {response.text}"
            gets[provider] = response.json()[0]
        for provider, summary in gets.items():  # the four jobs run side by side
            job = self.wait_for_job(summary["job_id"])
            assert job["state"] == "ok", f"{provider}: {job}"
            assert self.dataset_bytes(summary["id"]) == sent_bytes[provider], provider

        sends = {}
        for provider, cloud in self.clouds.items():
            dataset_id = gets[provider]["id"]
            self._put(f"histories/{history_id}/contents/{dataset_id}", {"name": "out.txt"}, json=True)
            payload = {"history_id": history_id, "authz_id": authz[provider], "bucket": cloud.bucket}
            response = self._post("cloud/storage/send", {**payload, "dataset_ids": [dataset_id]}, json=True)
            assert response.status_code == 200, f"{provider}: {response.text}"
            body = response.json()
            assert body["failed_dataset_labels"] == [], f"{provider}: {body}"
            sends[provider] = json.loads(body["sent_dataset_labels"][0])
            assert sends[provider]["object"] == "out.txt", provider
        for provider, label in sends.items():
            job = self.wait_for_job(label["job_id"])
            assert job["state"] == "ok", f"{provider}: {job}"
            cloud = self.clouds[provider]
            assert cloud.admin.get_object(cloud.bucket, "out.txt") == sent_bytes[provider], provider

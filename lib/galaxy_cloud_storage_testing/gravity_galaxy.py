"""A Galaxy 26.1 run the way admins run it: gravity (``galaxyctl``) and its supervisord starting
gunicorn (two workers), two job handlers of their own and a Celery worker, on PostgreSQL.

The config is an admin's: the plugin's samples (config_samples/galaxy.yml.sample,
job_conf.yml.sample, job_conf.handlers.yml.sample) merged into the minimal offline galaxy.yml of
``localgalaxy.write_galaxy_config``, plus gravity's own settings for the processes. The plugin's
tool_conf is written by its console script, as the README tells admins to.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Optional

import requests
import yaml
from sqlalchemy import create_engine, text

from galaxy_cloud_storage_testing import localgalaxy
from galaxy_cloud_storage_testing.postgres import PostgresCluster

VENV = sys.prefix
HANDLER_POOL = "job-handlers"
HANDLER_PROCESSES = 2
GUNICORN_WORKERS = 2
# gravity refuses to run as root unless it drives systemd; this is its switch for containers,
# where root has no systemd (the test runs as root here). Without root it changes nothing.
GRAVITY_ENV = {"GRAVITY_SKIP_SYSTEMD": "1"}


def merged(base: dict, extra: dict) -> dict:
    """``base`` with ``extra``'s settings, nested mappings merged (gravity's own rule for its config)."""
    result = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def gravity_settings(port: int) -> dict:
    """gravity's section beyond the plugin's sample: where gunicorn listens, and the processes."""
    return {
        "virtualenv": VENV,  # gravity runs gunicorn, celery and galaxy-main from this venv's bin
        "gunicorn": {"bind": f"127.0.0.1:{port}", "workers": GUNICORN_WORKERS},
        "celery": {
            "concurrency": 1,
            "loglevel": "INFO",
            # Beat only schedules Galaxy's periodic cleanups; one process less on a 2-core machine.
            "enable_beat": False,
        },
        "handlers": {"handler": {"processes": HANDLER_PROCESSES, "pools": [HANDLER_POOL, "workflow-schedulers"]}},
    }


def write_job_conf(directory: str) -> str:
    job_conf = merged(
        localgalaxy.read_sample("job_conf.yml.sample"), localgalaxy.read_sample("job_conf.handlers.yml.sample")
    )
    path = os.path.join(directory, "job_conf.yml")
    localgalaxy.write_private(path, yaml.safe_dump(job_conf))
    return path


def write_tool_conf(directory: str) -> None:
    """The plugin's tool_conf, by its console script (overwrites write_galaxy_config's copy)."""
    subprocess.run(
        [os.path.join(VENV, "bin", "galaxy-cloud-storage-tool-conf"), "cloud_storage_tool_conf.xml"],
        cwd=directory,
        check=True,
        capture_output=True,
    )


def write_admin_galaxy_yml(directory: str, plugin_config: dict, database_url: str, port: int) -> str:
    """galaxy.yml with a ``gravity`` and a ``galaxy`` section, as an admin's; returns its path."""
    path = localgalaxy.write_galaxy_config(directory, plugin_config)
    with open(path) as fh:
        minimal = yaml.safe_load(fh)["galaxy"]
    write_tool_conf(directory)
    write_job_conf(directory)
    sample = localgalaxy.read_sample("galaxy.yml.sample")
    galaxy = merged(minimal, sample["galaxy"])  # the sample's relative names resolve in this directory
    galaxy.update(
        {
            "database_connection": database_url,
            "job_config_file": "job_conf.yml",
            "galaxy_infrastructure_url": f"http://127.0.0.1:{port}",  # where jobs reach Galaxy's web processes
            # Celery with celery_conf's defaults: the broker is Galaxy's own database (SQLAlchemy
            # transport), results in <data_dir>/results.sqlite; no Redis or RabbitMQ to run.
            "enable_celery_tasks": True,
        }
    )
    config = {"gravity": merged(sample["gravity"], gravity_settings(port)), "galaxy": galaxy}
    localgalaxy.write_private(path, yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class GravityGalaxy:
    directory: str
    plugin_config: dict
    port: int = field(default_factory=localgalaxy.free_port)
    database: str = "postgresql"  # or "sqlite", to say what an admin on SQLite should expect
    postgres: Optional[PostgresCluster] = None
    galaxy_yml: str = ""
    database_url: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gravity_dir(self) -> str:
        return os.path.join(self.directory, "database", "gravity")  # gravity's default: <data_dir>/gravity

    @property
    def handler_names(self) -> list[str]:
        return [f"handler_{n}" for n in range(HANDLER_PROCESSES)]  # gravity's {name}_{process}

    def log(self, service: str) -> str:
        """What a service wrote so far (gravity's supervisord keeps one log per process)."""
        with open(os.path.join(self.gravity_dir, "log", f"{service}.log"), errors="replace") as fh:
            return fh.read()

    def galaxyctl(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [os.path.join(VENV, "bin", "galaxyctl"), "-c", self.galaxy_yml, *args],
            cwd=self.directory,
            env={**os.environ, **GRAVITY_ENV},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, timeout: float = 900) -> "GravityGalaxy":
        os.makedirs(self.directory, exist_ok=True)
        if self.database == "sqlite":
            database_dir = os.path.join(self.directory, "database")
            os.makedirs(database_dir, exist_ok=True)
            # IMMEDIATE: a writer takes the lock when its transaction begins (localgalaxy's choice too)
            self.database_url = f"sqlite:///{os.path.join(database_dir, 'universe.sqlite')}?isolation_level=IMMEDIATE"
        else:
            # As root the cluster runs as the postgres user, who must reach its directory: not under
            # pytest's owner-only temporary directories, but a directory of its own in /tmp.
            self.postgres = PostgresCluster(tempfile.mkdtemp(prefix="gravity-postgres-")).start()
            self.database_url = self.postgres.create_database("galaxy")
        self.galaxy_yml = write_admin_galaxy_yml(self.directory, self.plugin_config, self.database_url, self.port)
        if self.database == "sqlite":
            self._preassign_handlers()
        self.create_galaxy_tables()
        started = self.galaxyctl("start")
        if started.returncode:
            raise RuntimeError(f"galaxyctl start failed: {started.stdout}{started.stderr}")
        self.wait_until_serving(timeout)
        return self

    def _preassign_handlers(self) -> None:
        """SQLite has no ``SELECT ... FOR UPDATE SKIP LOCKED`` for the handlers to claim jobs with
        (the sample's ``db-skip-locked``): the web workers choose each new job's handler as they
        create it (``db-preassign``, the method Galaxy documents for such databases), over the
        handlers job_conf lists. gravity starts those by itself; its ``handlers:`` section would
        start a second, pool-attached pair under the same names, which db-preassign never gives a
        job (gravity says so in ``galaxyctl status``)."""
        path = os.path.join(self.directory, "job_conf.yml")
        with open(path) as fh:
            job_conf = yaml.safe_load(fh)
        # untagged: the default tag's handlers; gravity starts each under this name
        job_conf["handling"] = {"assign": ["db-preassign"], "processes": {name: {} for name in self.handler_names}}
        localgalaxy.write_private(path, yaml.safe_dump(job_conf))
        with open(self.galaxy_yml) as fh:
            config = yaml.safe_load(fh)
        del config["gravity"]["handlers"]
        localgalaxy.write_private(self.galaxy_yml, yaml.safe_dump(config, sort_keys=False))

    def create_galaxy_tables(self) -> None:
        """Galaxy's tables before the first start, as a checkout's ``sh db.sh init`` does: every
        process gravity starts at once would otherwise race to create them on an empty database
        (one loses, crashes, and supervisord restarts it a minute later)."""
        script = (
            "import sys;"
            "from galaxy.model.migrations import verify_databases_via_script;"
            "from galaxy.model.migrations.scripts import get_configuration_from_file;"
            "verify_databases_via_script(*get_configuration_from_file('.', sys.argv[1]))"
        )
        command = [sys.executable, "-c", script, self.galaxy_yml]
        subprocess.run(command, cwd=self.directory, check=True, capture_output=True)

    def wait_until_serving(self, timeout: float) -> None:
        """Until Galaxy answers over HTTP and every handler has announced itself in the database."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/api/version", timeout=5).ok and set(self.alive_handlers()) >= set(
                    self.handler_names
                ):
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        status = self.galaxyctl("status", timeout=60)
        raise RuntimeError(f"Galaxy under gravity not ready within {timeout} s:\n{status.stdout}{status.stderr}")

    def alive_handlers(self, within_seconds: float = 120) -> list[str]:
        """Server names of Galaxy processes whose database heartbeat is recent (table worker_process)."""
        recent = (
            "datetime('now', '-' || :within || ' seconds')"
            if self.database == "sqlite"
            else "(now() AT TIME ZONE 'utc') - make_interval(secs => :within)"
        )
        try:
            rows = self.query(
                f"SELECT server_name FROM worker_process WHERE update_time > {recent}", within=within_seconds
            )
        except Exception:  # the table is made by the first process to migrate the database
            return []
        return sorted(row[0] for row in rows)

    def decode_id(self, encoded: str) -> int:
        """A database id from an id of Galaxy's API (encoded with galaxy.yml's id_secret)."""
        from galaxy.security.idencoding import IdEncodingHelper

        with open(self.galaxy_yml) as fh:
            id_secret = yaml.safe_load(fh)["galaxy"]["id_secret"]
        return IdEncodingHelper(id_secret=id_secret).decode_id(encoded)

    def query(self, sql: str, **params) -> list:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return list(connection.execute(text(sql), params))
        finally:
            engine.dispose()

    def galaxyctl_in_background(self, *args: str) -> subprocess.Popen:
        """``galaxyctl`` without waiting: a restart blocks while the handlers drain their jobs."""
        return subprocess.Popen(
            [os.path.join(VENV, "bin", "galaxyctl"), "-c", self.galaxy_yml, *args],
            cwd=self.directory,
            env={**os.environ, **GRAVITY_ENV},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def handlers(self, action: str, timeout: float = 600) -> None:
        """``galaxyctl <action> handler``: stop, start or restart both handler processes (gravity's
        service ``handler``, supervisord's programs ``handler:handler_<n>``), as an admin does."""
        done = self.galaxyctl(action, "handler", timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"galaxyctl {action} handler failed: {done.stdout}{done.stderr}")

    def handler_pids(self) -> dict[str, int]:
        """Running handler processes by name, as supervisord reports them (``galaxyctl status``)."""
        status = self.galaxyctl("status", timeout=120).stdout
        pids = {}
        for line in status.splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[1] == "RUNNING" and fields[2] == "pid":
                name = fields[0].split(":")[-1]
                if name in self.handler_names:
                    pids[name] = int(fields[3].rstrip(","))
        return pids

    def job_directory(self, job_id: int) -> str:
        """A job's working directory: Galaxy's default <data_dir>/jobs_directory, in the object
        store's layout (``000/<id>``)."""
        return os.path.join(self.directory, "database", "jobs_directory", f"{job_id // 1000:03d}", str(job_id))

    def supervisord_pid(self) -> Optional[int]:
        try:
            with open(os.path.join(self.gravity_dir, "supervisor", "supervisord.pid")) as fh:
                return int(fh.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """``galaxyctl shutdown`` (supervisord stops every process), then whatever is left of
        supervisord's session (the local runner's jobs, each in a process group of its own)."""
        pid = self.supervisord_pid()
        if self.galaxy_yml:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.galaxyctl("shutdown", timeout=120)
        if pid is not None:  # supervisord daemonized into a session of its own: its pid is the session's id
            for member in localgalaxy.session_members(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, signal.SIGKILL)
        if self.postgres is not None:
            self.postgres.stop()
            shutil.rmtree(self.postgres.directory, ignore_errors=True)

"""A throwaway PostgreSQL cluster on 127.0.0.1 for the tests: Galaxy's and the plugin's tables on the
database most production Galaxies use, without touching (or needing) the machine's own cluster.

``PostgresCluster(directory)`` runs initdb in ``directory`` and the server on a free port, with trust
authentication for 127.0.0.1 only, no Unix socket, and durability switched off for speed.
initdb refuses to run as root, so as root the cluster runs as the ``postgres`` system user: the
directory is then given to that user, and every directory above it must let that user through
(``tempfile.mkdtemp()`` itself does, a directory inside one does not).
"""

import getpass
import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from typing import Optional

from galaxy_cloud_storage_testing.localgalaxy import free_port

SERVER_USER = "postgres"
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "200",  # each embedded Galaxy pools up to 30 connections per engine
}
HBA = "host all all 127.0.0.1/32 trust\n"  # and nothing else: no socket, no other address


class PostgresNotInstalled(RuntimeError):
    pass


def server_bindir() -> str:
    """The directory holding initdb and postgres: pg_config's, else the newest Debian one."""
    candidates = []
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(found.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for bindir in candidates:
        if all(os.access(os.path.join(bindir, name), os.X_OK) for name in ("initdb", "postgres", "pg_isready")):
            return bindir
    raise PostgresNotInstalled(
        "The PostgreSQL server binaries (initdb, postgres) are not installed: apt-get install postgresql"
    )


class PostgresCluster:
    def __init__(self, directory: str, port: Optional[int] = None):
        self.directory = os.path.abspath(directory)
        self.data = os.path.join(self.directory, "data")
        self.port = port or free_port()
        self.bindir = server_bindir()
        self.user = SERVER_USER if os.geteuid() == 0 else getpass.getuser()
        self.process: Optional[subprocess.Popen] = None

    def _run_as_server_user(self) -> dict:
        return {"user": SERVER_USER, "group": pwd.getpwnam(SERVER_USER).pw_gid} if os.geteuid() == 0 else {}

    def _bin(self, name: str) -> str:
        return os.path.join(self.bindir, name)

    def start(self, timeout: float = 60) -> "PostgresCluster":
        os.makedirs(self.directory, exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        as_server_user = self._run_as_server_user()
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            initdb = subprocess.run(
                [self._bin("initdb"), "-D", self.data, "-U", self.user, "-A", "trust", "-E", "UTF8", "--no-locale"]
                + ["--no-sync"],
                capture_output=True,
                text=True,
                cwd=self.directory,
                **as_server_user,
            )
            if initdb.returncode:
                raise RuntimeError(f"initdb as {self.user} in {self.directory} failed: {initdb.stderr.strip()}")
            with open(os.path.join(self.data, "pg_hba.conf"), "w") as fh:
                fh.write(HBA)
        options = [arg for name, value in SETTINGS.items() for arg in ("-c", f"{name}={value}")]
        log = open(os.path.join(self.directory, "postgres.log"), "ab")
        self.process = subprocess.Popen(
            [self._bin("postgres"), "-D", self.data, "-p", str(self.port), *options],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
            start_new_session=True,
            **as_server_user,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while subprocess.run([self._bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"PostgreSQL did not start; see {self.directory}/postgres.log")
            time.sleep(0.2)
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: Optional[str] = None) -> str:
        """Create database ``name`` (a copy of ``template`` if given); returns its SQLAlchemy URL."""
        command = [self._bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]
        subprocess.run(command + (["-T", template] if template else []) + [name], check=True, capture_output=True)
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then immediate (SIGQUIT) if it hangs; the files stay. Idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGQUIT)
            process.wait(30)

    def __enter__(self) -> "PostgresCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

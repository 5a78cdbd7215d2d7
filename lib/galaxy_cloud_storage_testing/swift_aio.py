"""OpenStack Swift all-in-one on 127.0.0.1, for the demo and the tests: a real Swift cluster.

PyPI ``swift`` runs in a virtualenv of its own (default ``.venv-swift`` beside ``.venv``, git-ignored):
its pins (eventlet, PasteDeploy, an older cryptography) have no business in Galaxy's environment.
Keystone and keystonemiddleware live there too (keystone_aio.py puts a real Keystone in front of a
cluster). ``python -m galaxy_cloud_storage_testing.swift_aio install [--venv PATH]`` creates it once
(idempotent, with a stamp).

A cluster is four processes (account, container and object servers and the proxy, each
``workers = 0``), one-replica rings, ``mount_check = false``, its data in a directory of its own.
The proxy's pipeline has tempauth (Swift's own v1 auth), tempurl, slo and ``dict_cache``
(galaxy_cloud_storage_testing/swift/dict_cache.py), an in-process stand-in for memcache, which tempauth needs as
``swift.cache``: one proxy process needs no shared cache daemon. Started with ``keystone``, the
proxy also accepts that Keystone's tokens (authtoken and keystoneauth, proxy-server-keystone.conf).

Users (tempauth, account ``AUTH_test``): ``test:tester`` (an account admin) and ``test:reader``, who
is no admin and reaches only the containers whose ACLs name it (``SwiftAdmin.share``).
"""

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

from galaxy_cloud_storage_testing import localgalaxy, REPOSITORY, storage_servers

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "swift")
DEFAULT_VENV = os.path.join(REPOSITORY, ".venv-swift")
# Keystone and its middleware too: tests run a real Keystone in front of a cluster (keystone_aio.py).
# They fit beside Swift in one venv (pip check finds no conflict).
REQUIREMENTS = ("swift==2.38.*", "keystone==30.0.*", "keystonemiddleware==13.0.*", "PyJWT>=2.8")
SWIFT_REQUIREMENT = " ".join(REQUIREMENTS)  # what the stamp records
STAMP_NAME = ".swift-aio-installed"

# Keys distinctive enough that a search for them (invariant 2 (docs/design.rst) tests) finds nothing by chance.
ADMIN_USER, ADMIN_KEY = "test:tester", "swift-admin-key-7c1e9b"
READER_USER, READER_KEY = "test:reader", "swift-reader-key-4d82f0"
SERVERS = ("account", "container", "object")


# --- the virtualenv -----------------------------------------------------------------------------


def swift_python(venv: str = DEFAULT_VENV) -> str:
    return os.path.join(venv, "bin", "python")


def is_installed(venv: str = DEFAULT_VENV) -> bool:
    try:
        with open(os.path.join(venv, STAMP_NAME)) as fh:
            return fh.read().strip() == SWIFT_REQUIREMENT
    except OSError:
        return False


def install(venv: str = DEFAULT_VENV, python: str = sys.executable) -> float:
    """Create ``venv`` with PyPI swift and keystone unless its stamp says they are there; returns the
    seconds spent (0 when nothing was to do). About a minute on a 2-core machine, 230 MB."""
    if is_installed(venv):
        return 0.0
    started = time.monotonic()
    if not os.path.exists(swift_python(venv)):
        subprocess.run([python, "-m", "venv", venv], check=True)
    pip = [swift_python(venv), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _quiet_pip(pip + list(REQUIREMENTS))
    imports = "import swift.proxy.server, swift.obj.server, keystone.server.wsgi, keystonemiddleware.auth_token"
    subprocess.run([swift_python(venv), "-c", imports], check=True)
    with open(os.path.join(venv, STAMP_NAME), "w") as fh:
        fh.write(SWIFT_REQUIREMENT + "\n")
    return time.monotonic() - started


def _quiet_pip(command: list) -> None:
    """Run pip, passing its messages on except "WARNING: Location ... is ignored", which comes from
    the machine's pip configuration, not from this install (bootstrap.sh filters them alike)."""
    result = subprocess.run(command, stderr=subprocess.PIPE, text=True)
    for line in result.stderr.splitlines():
        if not line.startswith("WARNING: Location"):
            print(line, file=sys.stderr)
    if result.returncode:
        raise subprocess.CalledProcessError(result.returncode, command)


# --- a cluster ----------------------------------------------------------------------------------


@dataclass
class SwiftCluster:
    """Four Swift processes serving one directory; ``auth_url`` is tempauth's v1 endpoint."""

    directory: str
    proxy_port: int
    processes: dict = field(default_factory=dict)  # server name -> subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/auth/v1.0"

    def admin(self) -> "SwiftAdmin":
        return SwiftAdmin(self.auth_url, ADMIN_USER, ADMIN_KEY)

    def stop(self) -> None:
        for process in self.processes.values():
            localgalaxy.stop(process, timeout=10)

    def stop_proxy(self) -> None:
        """Stop the proxy alone (the others keep their data), as an outage mid-transfer."""
        localgalaxy.stop(self.processes.pop("proxy"), timeout=10)

    def start_proxy(self, venv: str = DEFAULT_VENV, timeout: float = 60) -> None:
        self.processes["proxy"] = _start_server("proxy", self.directory, venv)
        _wait_for_proxy(self, timeout)


RING_SCRIPT = """
import sys
from swift.common.ring import RingBuilder
swift_dir = sys.argv[1]
for name, port in zip(("account", "container", "object"), sys.argv[2:]):
    builder = RingBuilder(8, 1, 1)  # 2**8 partitions, one replica, min_part_hours 1
    builder.add_dev(
        {"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port), "device": "d1", "weight": 1}
    )
    builder.rebalance()
    builder.save(f"{swift_dir}/{name}.builder")
    builder.get_ring().save(f"{swift_dir}/{name}.ring.gz")
"""


def _render(template: str, target: str, values: dict) -> None:
    with open(os.path.join(TEMPLATES, template)) as fh:
        text = fh.read()
    with open(target, "w") as fh:
        fh.write(text.format(**values) if template.endswith(".conf") and template != "swift.conf" else text)


def _start_server(name: str, directory: str, venv: str):
    command = [
        os.path.join(venv, "bin", f"swift-{name}-server"),
        os.path.join(directory, f"{name}-server.conf"),
        "--verbose",
    ]
    # PYTHONPATH: the proxy loads dict_cache from the templates' folder.
    env = {"PYTHONPATH": TEMPLATES, "PYTHONUNBUFFERED": "1"}
    return localgalaxy.start(command, os.path.join(directory, f"{name}.log"), directory, env)


def _wait_for_proxy(cluster: SwiftCluster, timeout: float) -> float:
    def ready() -> bool:
        # An authenticated HEAD of the account goes through proxy, account server and rings.
        return cluster.admin().connection().head_account() is not None

    return storage_servers.wait_until(_ignoring_client_errors(ready), cluster.processes["proxy"], "Swift", timeout)


def _ignoring_client_errors(ready):
    from swiftclient.exceptions import ClientException

    def check() -> bool:
        try:
            return ready()
        except ClientException:
            return False

    return check


def start(
    directory: str,
    venv: str = DEFAULT_VENV,
    timeout: float = 60,
    *,
    proxy_port: Optional[int] = None,
    keystone: Optional[dict] = None,
    token_life: int = 86400,
) -> SwiftCluster:
    """A cluster with its data, rings and logs in ``directory`` (created), on free ports; ready
    (tempauth answers and the test account exists) when returned. Takes 3-8 s.

    ``keystone``: ``{"url", "service_password"}`` of a Keystone (keystone_aio.py) whose tokens the
    proxy accepts too, for the accounts ``KEY_<project id>`` (tempauth keeps ``AUTH_test``).
    ``token_life``: seconds a tempauth token lives (tempauth's default: a day); shorter, for tests
    of credentials that must not expire while a job waits."""
    if not is_installed(venv):
        raise RuntimeError(
            f"Swift is not installed in {venv}: "
            f"run python -m galaxy_cloud_storage_testing.swift_aio install --venv {venv}"
        )
    ports = {f"{name}_port": localgalaxy.free_port() for name in SERVERS}
    ports["proxy_port"] = proxy_port or localgalaxy.free_port()
    devices = os.path.join(directory, "devices")
    os.makedirs(os.path.join(devices, "d1"), exist_ok=True)
    values = {**ports, "devices": devices, "swift_dir": directory, "admin_key": ADMIN_KEY, "reader_key": READER_KEY}
    values["token_life"] = token_life
    if keystone:
        values.update(keystone_url=keystone["url"], keystone_service_password=keystone["service_password"])
    for name in SERVERS:
        _render(f"{name}-server.conf", os.path.join(directory, f"{name}-server.conf"), values)
    proxy_template = "proxy-server-keystone.conf" if keystone else "proxy-server.conf"
    _render(proxy_template, os.path.join(directory, "proxy-server.conf"), values)
    _render("swift.conf", os.path.join(directory, "swift.conf"), values)
    # swift-ring-builder's own code (RingBuilder), in one process instead of nine commands.
    subprocess.run(
        [swift_python(venv), "-c", RING_SCRIPT, directory, *(str(ports[f"{name}_port"]) for name in SERVERS)],
        check=True, cwd=directory,
    )  # fmt: skip
    cluster = SwiftCluster(directory, ports["proxy_port"])
    try:
        for name in (*SERVERS, "proxy"):
            cluster.processes[name] = _start_server(name, directory, venv)
        _wait_for_proxy(cluster, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


# --- the server's own access -----------------------------------------------------------------------


class SwiftAdmin(storage_servers.StorageAdmin):
    """The account admin's access (tempauth v1, test:tester) through swiftclient."""

    provider = "openstack"

    def __init__(self, auth_url: str, user: str = ADMIN_USER, key: str = ADMIN_KEY):
        self.auth_url, self.user, self.key = auth_url, user, key

    def connection(self):
        from swiftclient.client import Connection

        # Only what is given here: swiftclient.Connection reads no OS_* variable.
        return Connection(authurl=self.auth_url, user=self.user, key=self.key, auth_version="1", retries=1)

    def plugin_settings(self) -> dict:
        return {"enabled": True, "allow_stored_secrets": True, "auth_version": "1", "v1_auth_url": self.auth_url}

    def demo_admin(self) -> dict:
        return {"auth_url": self.auth_url, "user": self.user, "key": self.key}

    def create_bucket(self, name: str) -> str:
        self.connection().put_container(name)
        return name

    def share(self, container: str, user: str = READER_USER) -> None:
        """Let ``user`` (no account admin) list, read and write ``container`` (container ACLs)."""
        self.connection().post_container(container, {"X-Container-Read": user, "X-Container-Write": user})

    def put_object(self, bucket: str, key: str, data: bytes) -> None:
        self.connection().put_object(bucket, key, data)

    def object_putter(self, bucket: str):
        connection = self.connection()
        return lambda key, data: connection.put_object(bucket, key, data)

    def get_object(self, bucket: str, key: str) -> bytes:
        from swiftclient.exceptions import ClientException

        try:
            return self.connection().get_object(bucket, key)[1]
        except ClientException as e:
            if e.http_status == 404:
                raise KeyError(key) from e
            raise

    def delete_object(self, bucket: str, key: str) -> None:
        self.connection().delete_object(bucket, key)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(
            item["name"] for item in self.connection().get_container(bucket, prefix=prefix, full_listing=True)[1]
        )

    def container_exists(self, name: str) -> bool:
        from swiftclient.exceptions import ClientException

        try:
            self.connection().head_container(name)
            return True
        except ClientException as e:
            if e.http_status == 404:
                return False
            raise


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    install_command = commands.add_parser("install", help="create the Swift virtualenv (idempotent)")
    install_command.add_argument("--venv", default=DEFAULT_VENV)
    args = parser.parse_args(argv)
    if args.command == "install":
        spent = install(args.venv)
        print(f"Swift is installed in {args.venv}" + (f" ({spent:.0f} s)" if spent else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A real Galaxy 26.1 (pip-installed) as a subprocess on 127.0.0.1: its config, start, readiness and
a user with an API key. Shared by the demo (scripts/demo.py) and the server-mode tests."""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from typing import Optional

import requests
import yaml

UPLOAD_TOOL_CONF = """<?xml version="1.0"?>
<toolbox>
  <section id="getext" name="Get Data">
    <tool file="data_source/upload.xml" />
  </section>
</toolbox>
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_private(path: str, text: str) -> None:
    """Owner-only: most of these files hold a secret (id_secret, admin key, vault key)."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        fh.write(text)


def persisted_secret(path: str, make=lambda: secrets.token_hex(16)) -> str:
    """A secret generated once and kept in ``path``, so a restart finds the same database keys."""
    if not os.path.exists(path):
        write_private(path, make())
    with open(path) as fh:
        return fh.read().strip()


SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "config_samples")


def read_sample(name: str) -> dict:
    """One of the admin's samples (config_samples/), as the tests and the demo use them."""
    with open(os.path.join(SAMPLES, name)) as fh:
        return yaml.safe_load(fh) or {}


def bundled_tools() -> str:
    import galaxy.tools  # imported on use: 10 s, which the storage-server harnesses don't need

    return os.path.join(os.path.dirname(galaxy.tools.__file__), "bundled")


def write_galaxy_config(
    directory: str, plugin_config: dict, admin_email: str = "admin@galaxy.local", vault: bool = True, **overrides
) -> str:
    """Write galaxy.yml (and the files it names) for a minimal Galaxy in ``directory``; returns its path.

    What it holds is what a pip-installed Galaxy needs to start offline on 127.0.0.1: SQLite, the
    local job runner as the admin's sample routes it (job_conf.yml.sample: running jobs' output
    shown live), the upload tool and the plugin's transfer tools (run with this venv's Python), no
    container or conda downloads, a database vault.
    """
    from cryptography.fernet import Fernet

    from galaxy_cloud_storage.tools import tool_conf_xml

    os.makedirs(os.path.join(directory, "database"), exist_ok=True)
    files = {
        "tool_conf.xml": UPLOAD_TOOL_CONF,
        "cloud_storage_tool_conf.xml": tool_conf_xml(),
        "tool_data_table_conf.xml": "<tables/>\n",
        "cloud_storage_conf.yml": yaml.safe_dump(plugin_config),
        "job_conf.yml": yaml.safe_dump(read_sample("job_conf.yml.sample")),
    }
    for name, text in files.items():
        write_private(os.path.join(directory, name), text)
    galaxy = {
        "data_dir": os.path.join(directory, "database"),
        "database_connection": f"sqlite:///{directory}/database/universe.sqlite?isolation_level=IMMEDIATE",
        "database_auto_migrate": True,
        "tool_config_file": ",".join(
            os.path.join(directory, name) for name in ("tool_conf.xml", "cloud_storage_tool_conf.xml")
        ),
        "preserve_python_environment": "legacy_and_local",  # the transfer tools run the plugin's Python
        "tool_data_table_config_path": os.path.join(directory, "tool_data_table_conf.xml"),
        "tool_path": bundled_tools(),
        "id_secret": persisted_secret(os.path.join(directory, "id_secret")),
        "admin_users": admin_email,
        "bootstrap_admin_api_key": persisted_secret(os.path.join(directory, "bootstrap_admin_api_key")),
        "conda_auto_init": False,
        "enable_mulled_containers": False,
        "involucro_auto_init": False,
        "fetch_url_allowlist": ["127.0.0.0/8"],
        "cloud_storage_config_file": os.path.join(directory, "cloud_storage_conf.yml"),
        "job_config_file": os.path.join(directory, "job_conf.yml"),
    }
    if vault:
        key = persisted_secret(os.path.join(directory, "vault_key"), lambda: Fernet.generate_key().decode())
        vault_file = os.path.join(directory, "vault_conf.yml")
        write_private(vault_file, yaml.safe_dump({"type": "database", "encryption_keys": [key]}))
        galaxy["vault_config_file"] = vault_file
    galaxy.update(overrides)
    path = os.path.join(directory, "galaxy.yml")
    write_private(path, yaml.safe_dump({"galaxy": galaxy}))
    return path


def admin_key(galaxy_yml: str) -> str:
    with open(galaxy_yml) as fh:
        return yaml.safe_load(fh)["galaxy"]["bootstrap_admin_api_key"]


def start(command: list[str], log_path: str, cwd: str, env: Optional[dict] = None, preexec_fn=None) -> subprocess.Popen:
    """Start a server command in a session of its own (so that ``stop`` finds all it started),
    its output in ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command, env={**os.environ, **(env or {})}, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec_fn,
        )  # fmt: skip


def start_galaxy(command: list[str], galaxy_yml: str, log_path: str, **kwargs) -> subprocess.Popen:
    return start(command, log_path, os.path.dirname(galaxy_yml), {"GALAXY_CONFIG_FILE": galaxy_yml}, **kwargs)


def processes_where(predicate) -> list[int]:
    """The pids for which ``predicate(pid)`` holds (Linux /proc; elsewhere none are found); a
    process gone meanwhile (OSError) is left out."""
    pids = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                if predicate(int(entry)):
                    pids.append(int(entry))
            except OSError:
                pass  # gone meanwhile
    return pids


def session_members(sid: int) -> list[int]:
    """Processes of session ``sid``."""
    return processes_where(lambda pid: os.getsid(pid) == sid)


def stop(process: subprocess.Popen, timeout: float = 30, kill_now=lambda: False) -> None:
    """Stop a process started by ``start`` and everything it started: SIGTERM, SIGKILL after
    ``timeout`` s (or as soon as ``kill_now()``), then what is left of its session."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process.poll() is None and not kill_now() and time.monotonic() < deadline:
        time.sleep(0.2)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # Galaxy's local runner puts each job in a process group of its own, which outlives Galaxy:
    # what is left of the session goes too.
    for pid in session_members(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 300) -> float:
    """Seconds until ``GET {url}/api/version`` answers; raises if the process dies or time runs out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"Galaxy exited with code {process.returncode} before answering")
        try:
            if requests.get(f"{url}/api/version", timeout=5).ok:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"Galaxy did not answer {url}/api/version within {timeout} s")


def user_api_key(url: str, bootstrap_key: str, email: str, password: str) -> str:
    """A working API key of the user ``email``, created with the bootstrap admin key if needed."""
    admin = {"x-api-key": bootstrap_key}
    found = requests.get(f"{url}/api/users", params={"f_email": email}, headers=admin, timeout=30)
    found.raise_for_status()
    users = [u for u in found.json() if u["email"] == email]
    if users:
        user_id = users[0]["id"]
    else:
        username = email.split("@")[0].replace(".", "-").lower()
        created = requests.post(
            f"{url}/api/users",
            json={"username": username, "email": email, "password": password},
            headers=admin,
            timeout=30,
        )
        created.raise_for_status()
        user_id = created.json()["id"]
    key = requests.get(f"{url}/api/users/{user_id}/api_key", headers=admin, timeout=30)  # get or create
    key.raise_for_status()
    return key.json()

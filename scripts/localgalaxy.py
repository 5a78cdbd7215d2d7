"""A real Galaxy 26.1 (pip-installed) as a subprocess on 127.0.0.1: its config, start, readiness and
a user with an API key. Shared by the demo (scripts/demo.py) and the server-mode tests."""

import os
import secrets
import signal
import socket
import subprocess
import time
from typing import Optional

import requests
import yaml

import galaxy.tools

BUNDLED_TOOLS = os.path.join(os.path.dirname(galaxy.tools.__file__), "bundled")
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


def persisted_secret(path: str, make=lambda: secrets.token_hex(16)) -> str:
    """A secret generated once and kept in ``path``, so a restart finds the same database keys."""
    if not os.path.exists(path):
        with open(path, "w") as fh:
            fh.write(make())
        os.chmod(path, 0o600)
    with open(path) as fh:
        return fh.read().strip()


def write_galaxy_config(directory: str, plugin_config: dict, vault: bool = True, **overrides) -> str:
    """Write galaxy.yml (and the files it names) for a minimal Galaxy in ``directory``; returns its path.

    What it holds is what a pip-installed Galaxy needs to start offline on 127.0.0.1: SQLite, the
    local job runner, only the upload tool, no container or conda downloads, a database vault.
    """
    from cryptography.fernet import Fernet

    os.makedirs(os.path.join(directory, "database"), exist_ok=True)
    files = {
        "tool_conf.xml": UPLOAD_TOOL_CONF,
        "tool_data_table_conf.xml": "<tables/>\n",
        "cloud_storage_conf.yml": yaml.safe_dump(plugin_config),
    }
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as fh:
            fh.write(text)
    galaxy = {
        "data_dir": os.path.join(directory, "database"),
        "database_connection": f"sqlite:///{directory}/database/universe.sqlite?isolation_level=IMMEDIATE",
        "database_auto_migrate": True,
        "tool_config_file": os.path.join(directory, "tool_conf.xml"),
        "tool_data_table_config_path": os.path.join(directory, "tool_data_table_conf.xml"),
        "tool_path": BUNDLED_TOOLS,
        "id_secret": persisted_secret(os.path.join(directory, "id_secret")),
        "admin_users": "admin@galaxy.local",
        "bootstrap_admin_api_key": persisted_secret(os.path.join(directory, "bootstrap_admin_api_key")),
        "conda_auto_init": False,
        "enable_mulled_containers": False,
        "involucro_auto_init": False,
        "fetch_url_allowlist": ["127.0.0.0/8"],
        "cloud_storage_config_file": os.path.join(directory, "cloud_storage_conf.yml"),
    }
    if vault:
        key = persisted_secret(os.path.join(directory, "vault_key"), lambda: Fernet.generate_key().decode())
        vault_file = os.path.join(directory, "vault_conf.yml")
        with open(vault_file, "w") as fh:
            yaml.safe_dump({"type": "database", "encryption_keys": [key]}, fh)
        galaxy["vault_config_file"] = vault_file
    galaxy.update(overrides)
    path = os.path.join(directory, "galaxy.yml")
    with open(path, "w") as fh:
        yaml.safe_dump({"galaxy": galaxy}, fh)
    return path


def admin_key(galaxy_yml: str) -> str:
    with open(galaxy_yml) as fh:
        return yaml.safe_load(fh)["galaxy"]["bootstrap_admin_api_key"]


def start(command: list[str], galaxy_yml: str, log_path: str, cwd: Optional[str] = None) -> subprocess.Popen:
    """Start a Galaxy server command in its own process group, its output in ``log_path``."""
    env = {**os.environ, "GALAXY_CONFIG_FILE": galaxy_yml}
    log = open(log_path, "ab")
    return subprocess.Popen(
        command, env=env, cwd=cwd or os.path.dirname(galaxy_yml), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a process started by ``start`` and everything it started (job subprocesses too)."""
    if process.poll() is None:
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    try:
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group
    except ProcessLookupError:
        pass


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
            f"{url}/api/users", json={"username": username, "email": email, "password": password},
            headers=admin, timeout=30,
        )
        created.raise_for_status()
        user_id = created.json()["id"]
    key = requests.get(f"{url}/api/users/{user_id}/api_key", headers=admin, timeout=30)  # get or create
    key.raise_for_status()
    return key.json()

"""The two production ways in, each a real Galaxy subprocess on 127.0.0.1:

- gunicorn as gravity starts it (Galaxy's stock factory and worker class), with the plugin's config
  module in place of Galaxy's, as gravity's ``gunicorn: extra_args`` would put it;
- uvicorn with the plugin's drop-in factory, under a ``galaxy_url_prefix``.
"""

import hashlib
import os
import sys

import pytest
import requests

from galaxy_cloud_storage.api import TAG
from galaxy_cloud_storage_testing import localgalaxy

ROLE = "arn:aws:iam::123456789012:role/galaxy"
VENV_BIN = os.path.dirname(sys.executable)


def installed_galaxy_digest() -> str:
    """A digest of every file of the installed Galaxy, to show that running the plugin writes none."""
    import galaxy

    digest = hashlib.sha256()
    walked = (entry for root in sorted(galaxy.__path__) for entry in os.walk(root))  # a namespace package
    for folder, dirs, files in sorted(walked):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(path.encode())
            with open(path, "rb") as fh:
                digest.update(fh.read())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def galaxy_digest_before():
    return installed_galaxy_digest()


def serve(tmp_path, command_for_port, **galaxy_overrides):
    port = localgalaxy.free_port()
    url = f"http://127.0.0.1:{port}{galaxy_overrides.get('galaxy_url_prefix', '')}"  # where jobs reach Galaxy
    galaxy_yml = localgalaxy.write_galaxy_config(
        str(tmp_path), {"providers": {"aws": {}}}, galaxy_infrastructure_url=url, **galaxy_overrides
    )
    process = localgalaxy.start_galaxy(command_for_port(port), galaxy_yml, str(tmp_path / "galaxy.log"))
    return process, port, galaxy_yml


def check_plugin_serves(base_url: str, galaxy_yml: str, log_path: str) -> None:
    anonymous = requests.get(f"{base_url}/api/cloud/authz", timeout=30)
    # the plugin's router answered (Galaxy's legacy catch-all would say "No route for ...")
    assert anonymous.status_code == 403, anonymous.text
    assert set(anonymous.json()) >= {"err_msg", "err_code"}
    key = localgalaxy.user_api_key(base_url, localgalaxy.admin_key(galaxy_yml), "user@example.org", "password123")
    listed = requests.get(f"{base_url}/api/cloud/authz", headers={"x-api-key": key}, timeout=30)
    assert listed.status_code == 200 and listed.json() == [], listed.text
    refused = requests.post(
        f"{base_url}/api/cloud/authz",
        json={"provider": "aws", "config": {"role_arn": ROLE}},
        headers={"x-api-key": key},
        timeout=30,
    )
    assert refused.status_code == 400 and "log in" in refused.json()["err_msg"], refused.text
    schema = requests.get(f"{base_url}/openapi.json", timeout=60).json()
    assert "/api/cloud/authz/{authz_id}" in schema["paths"]
    assert schema["paths"]["/api/cloud/authz"]["get"]["tags"] == [TAG]
    with open(log_path) as fh:
        log = fh.read()
    assert "galaxy-cloud-storage" in log and "mounted" in log


def test_gunicorn_with_gravity_command_line(tmp_path, galaxy_digest_before):
    """gravity's command line, with ``--config python:galaxy_cloud_storage.gunicorn_config`` from extra_args."""

    def command(port):
        return [
            os.path.join(VENV_BIN, "gunicorn"), "galaxy.webapps.galaxy.fast_factory:factory()",
            "--timeout", "300", "--pythonpath", "lib", "-k", "galaxy.webapps.galaxy.workers.Worker",
            "-b", f"127.0.0.1:{port}", "--workers=1",
            "--config", "python:galaxy.web_stack.gunicorn_config",
            "--config", "python:galaxy_cloud_storage.gunicorn_config",
        ]  # fmt: skip

    process, port, galaxy_yml = serve(tmp_path, command)
    try:
        localgalaxy.wait_until_up(f"http://127.0.0.1:{port}", process)
        check_plugin_serves(f"http://127.0.0.1:{port}", galaxy_yml, str(tmp_path / "galaxy.log"))
    finally:
        localgalaxy.stop(process)
    assert installed_galaxy_digest() == galaxy_digest_before


def uvicorn(factory):
    def command(port):
        return [
            os.path.join(VENV_BIN, "uvicorn"), "--factory", factory, "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip

    return command


def test_uvicorn_factory_under_url_prefix_then_galaxy_without_plugin(tmp_path, galaxy_digest_before):
    process, port, galaxy_yml = serve(
        tmp_path, uvicorn("galaxy_cloud_storage.mount:factory"), galaxy_url_prefix="/galaxy"
    )
    base = f"http://127.0.0.1:{port}/galaxy"
    try:
        localgalaxy.wait_until_up(base, process)
        check_plugin_serves(base, galaxy_yml, str(tmp_path / "galaxy.log"))
        unprefixed = requests.get(f"http://127.0.0.1:{port}/api/cloud/authz", timeout=30)
        assert unprefixed.status_code == 404
    finally:
        localgalaxy.stop(process)
    assert installed_galaxy_digest() == galaxy_digest_before

    # The plugin removed: Galaxy's stock factory on the same database, which holds the plugin's tables.
    process = localgalaxy.start_galaxy(
        uvicorn("galaxy.webapps.galaxy.fast_factory:factory")(port), galaxy_yml, str(tmp_path / "stock.log")
    )
    try:
        localgalaxy.wait_until_up(base, process)
        key = localgalaxy.user_api_key(base, localgalaxy.admin_key(galaxy_yml), "user@example.org", "password123")
        history = requests.post(
            f"{base}/api/histories", json={"name": "after the plugin"}, headers={"x-api-key": key}, timeout=30
        )
        assert history.status_code == 200, history.text
        gone = requests.get(f"{base}/api/cloud/authz", headers={"x-api-key": key}, timeout=30)
        assert gone.status_code == 404
    finally:
        localgalaxy.stop(process)

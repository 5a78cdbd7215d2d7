"""Azurite (npm ``azurite``) as a local Azure Blob Storage, for the tests and the demo.

Two flavours, each a subprocess on 127.0.0.1 (``localgalaxy.start``):

- plain HTTP (``start(..., https=None)``): shared key and SAS only;
- HTTPS with ``--oauth basic`` (``https=local_ca.local_certificates(dir)``): bearer tokens too.
  Azurite checks a token's issuer (``https://sts.windows.net/...``), audience
  (``https://storage.azure.com``) and lifetime, not its signature; ``entra_token_server.py`` issues
  such tokens after checking the user's assertion as Entra would.

``AzuriteAdmin`` is the account's own access (the well-known development account key), to prepare
containers, check what the plugin wrote, and make SAS tokens scoped to one container.
"""

import os
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional

import requests
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import (
    AccountSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_account_sas,
    generate_container_sas,
    ResourceTypes,
)

from galaxy_cloud_storage_testing import localgalaxy, NODE_DIR
from galaxy_cloud_storage_testing.local_ca import LocalCertificates
from galaxy_cloud_storage_testing.storage_servers import StorageAdmin, wait_until

AZURITE_BLOB = os.path.join(NODE_DIR, "node_modules", ".bin", "azurite-blob")
# Azurite's development account: public, documented values, the same on every machine.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def command(port: int, location: str, https: Optional[LocalCertificates] = None) -> list[str]:
    """azurite-blob on 127.0.0.1:``port``; with ``https``, TLS with that certificate and bearer tokens."""
    args = [
        AZURITE_BLOB, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", location,
        "--silent", "--disableTelemetry",
        # azure-storage-blob 12.31 speaks an API version newer than Azurite knows.
        "--skipApiVersionCheck",
    ]  # fmt: skip
    if https is not None:
        args += ["--oauth", "basic", "--cert", https.cert, "--key", https.key]
    return args


def start(port: int, location: str, log_path: str, https: Optional[LocalCertificates] = None) -> subprocess.Popen:
    os.makedirs(location, exist_ok=True)
    return localgalaxy.start(command(port, location, https), log_path, location)


@dataclass
class AzuriteAdmin(StorageAdmin):
    """The development account's own access to an Azurite started by ``start``."""

    port: int
    https: Optional[LocalCertificates] = None
    #: the local Entra token endpoint's base URL (entra_token_server.py), when there is one
    authority_host: Optional[str] = None
    allow_stored_secrets: bool = True
    provider: str = field(default="azure", init=False)

    @property
    def scheme(self) -> str:
        return "https" if self.https else "http"

    @property
    def account_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def blob_endpoint(self) -> str:
        """The plugin's ``blob_endpoint`` setting: path-style, with ``{account}`` for the account."""
        return f"{self.scheme}://127.0.0.1:{self.port}/{{account}}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.account_url};"
        )

    @property
    def ca_bundle(self) -> Optional[str]:
        return self.https.ca if self.https else None

    def service(self) -> BlobServiceClient:
        return BlobServiceClient(
            self.account_url, credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY},
            connection_verify=self.ca_bundle or True,
        )  # fmt: skip

    def ready(self) -> bool:
        # Any HTTP answer (400 for a bare GET) means Azurite is up.
        requests.get(self.account_url, timeout=2, verify=self.ca_bundle or True)
        return True

    def wait(self, process: subprocess.Popen, timeout: float = 60) -> float:
        return wait_until(self.ready, process, "Azurite", timeout)

    # -- StorageAdmin ----------------------------------------------------------------------------

    def plugin_settings(self) -> dict:
        settings = {
            "enabled": True,
            "blob_endpoint": self.blob_endpoint,
            "allow_stored_secrets": self.allow_stored_secrets,
        }
        if self.authority_host:
            settings["authority_host"] = self.authority_host
        if self.ca_bundle:
            settings["ca_bundle"] = self.ca_bundle
        return settings

    def demo_admin(self) -> dict:
        return {"connection_string": self.connection_string}

    def create_bucket(self, name: str) -> str:
        try:
            self.service().create_container(name)
        except ResourceExistsError:
            pass
        return name

    def put_object(self, bucket: str, key: str, data: bytes) -> None:
        self.service().get_blob_client(bucket, key).upload_blob(data, overwrite=True)

    def object_putter(self, bucket: str):
        container = self.service().get_container_client(bucket)
        return lambda key, data: container.upload_blob(key, data, overwrite=True)

    def get_object(self, bucket: str, key: str) -> bytes:
        try:
            return self.service().get_blob_client(bucket, key).download_blob().readall()
        except ResourceNotFoundError:
            raise KeyError(key) from None

    def delete_object(self, bucket: str, key: str) -> None:
        try:
            self.service().get_blob_client(bucket, key).delete_blob()
        except ResourceNotFoundError:
            pass

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(
            b.name for b in self.service().get_container_client(bucket).list_blobs(name_starts_with=prefix or None)
        )

    # -- for the tests ---------------------------------------------------------------------------

    def container_sas(
        self, container: str, permission: str = "racwdl", lifetime: timedelta = timedelta(hours=1)
    ) -> str:
        """A SAS for ``container`` only (read, add, create, write, delete, list by default)."""
        return generate_container_sas(
            ACCOUNT, container, account_key=ACCOUNT_KEY,
            permission=ContainerSasPermissions.from_string(permission),
            expiry=datetime.now(timezone.utc) + lifetime,
        )  # fmt: skip

    def account_sas(self, permission: str = "racwdl", lifetime: timedelta = timedelta(hours=1)) -> str:
        """A SAS for the blob service of the whole account (containers and blobs)."""
        return generate_account_sas(
            ACCOUNT, ACCOUNT_KEY, ResourceTypes(service=True, container=True, object=True),
            AccountSasPermissions.from_string(permission), expiry=datetime.now(timezone.utc) + lifetime,
        )  # fmt: skip

    def uncommitted_blocks(self, bucket: str, key: str) -> int:
        """How many staged, uncommitted blocks ``key`` has (0 when there is no such blob)."""
        try:
            _, uncommitted = self.service().get_blob_client(bucket, key).get_block_list("uncommitted")
        except ResourceNotFoundError:
            return 0
        return len(uncommitted)

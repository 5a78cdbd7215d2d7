"""providers.azure.storage.AzureStorage against real Azurite servers on 127.0.0.1 (see
azure_fixtures.py): plain HTTP with SAS tokens, and HTTPS with --oauth basic with tokens from the
local Entra endpoint; what only Azure has. What every backend does is in
test_unit_storage_contract.py."""

import logging
import os
import threading
import time

import pytest
from azure_fixtures import APP_SECRET, azurite, FEDERATED_APP, localgalaxy, SHORT_LIFETIME, SHORT_LIVED_APP, TENANT
from file_bytes import file_sha256, write

from galaxy_cloud_storage.providers.azure import AzureAuthzConfig, AzureSettings
from galaxy_cloud_storage.providers.azure.credentials import azure_credentials
from galaxy_cloud_storage.providers.azure.storage import AzureCredentials, AzureStorage
from galaxy_cloud_storage.providers.settings import MiB
from galaxy_cloud_storage.providers.storage import (
    AccessDenied,
    BucketNotFound,
    MissingCredentials,
    ObjectNotFound,
    StorageError,
)
from galaxy_cloud_storage_testing.fault_proxy import FaultProxy

pytest_plugins = ["azure_fixtures"]  # Azurite, the Entra endpoint and the issuer, as fixtures

ACCOUNT = {"storage_account": azurite.ACCOUNT}
ODD_KEY = "dir/sub dir/ünïcødé ✓ file.txt"


def sas_storage(admin, sas=None, **settings) -> AzureStorage:
    settings = AzureSettings(**{**admin.plugin_settings(), **settings})
    return AzureStorage(settings, AzureCredentials(sas_token=sas or admin.account_sas()), ACCOUNT)


@pytest.fixture
def storage(azurite_http):
    return sas_storage(azurite_http)


def dead_endpoint() -> str:
    return f"http://127.0.0.1:{localgalaxy.free_port()}/{{account}}"  # nothing listens there


# --- objects -----------------------------------------------------------------------------------


def test_large_object_moves_in_blocks(azurite_http, container, tmp_path):
    """40 MiB in 1 MiB blocks and ranges, 4 at a time both ways: bytes identical, the blob made of 40 blocks."""
    storage = sas_storage(azurite_http, block_size=MiB, chunk_size=MiB)
    source = tmp_path / "big"
    with open(source, "wb") as fh:
        for _ in range(40):
            fh.write(os.urandom(MiB))
    assert storage.upload(str(source), container, "big").size == 40 * MiB
    committed, _ = azurite_http.service().get_blob_client(container, "big").get_block_list("committed")
    assert len(committed) == 40
    assert storage.download(container, "big", str(tmp_path / "back")).size == 40 * MiB
    assert file_sha256(tmp_path / "back") == file_sha256(source)


# --- containers: missing vs denied -------------------------------------------------------------


def test_missing_container(storage, tmp_path):
    with pytest.raises(BucketNotFound, match="Bucket 'no-such-container' does not exist"):
        storage.check_bucket("no-such-container")
    with pytest.raises(BucketNotFound):
        storage.stat("no-such-container", "key")
    with pytest.raises(BucketNotFound):
        storage.upload(write(tmp_path / "f", b"x"), "no-such-container", "key")


def test_container_sas_reaches_its_container(azurite_http, container):
    """A container SAS may not read container properties (as on Azure): check_bucket lists instead."""
    storage = sas_storage(azurite_http, azurite_http.container_sas(container))
    storage.check_bucket(container)


def test_read_only_sas_cannot_upload(azurite_http, container, tmp_path):
    storage = sas_storage(azurite_http, azurite_http.container_sas(container, permission="rl"))
    with pytest.raises(AccessDenied):
        storage.upload(write(tmp_path / "in", b"y"), container, "new")
    assert azurite_http.list_keys(container) == []


# --- a failed upload leaves nothing ------------------------------------------------------------


def test_failed_upload_leaves_no_blob(azurite_http, container, tmp_path):
    """The endpoint goes away while blocks are being staged: the upload fails as "unreachable",
    and the blob does not exist (its staged blocks were never committed). The client talks to
    Azurite through a relay that the test cuts, so Azurite keeps its state to be asked."""
    azurite_http.put_object(container, "kept", b"kept")
    source = tmp_path / "big"
    with open(source, "wb") as fh:
        for _ in range(64):
            fh.write(os.urandom(MiB))
    relay = FaultProxy(azurite_http.port)
    relayed = f"http://127.0.0.1:{relay.port}/{{account}}"
    settings = AzureSettings(
        **{**azurite_http.plugin_settings(), "blob_endpoint": relayed, "block_size": 256 * 1024, "retries": 0}
    )
    storage = AzureStorage(settings, AzureCredentials(sas_token=azurite_http.account_sas()), ACCOUNT)
    failure = []

    def upload():
        try:
            storage.upload(str(source), container, "partial")
        except StorageError as e:
            failure.append(e)

    uploading = threading.Thread(target=upload)
    uploading.start()
    deadline = time.monotonic() + 30
    while azurite_http.uncommitted_blocks(container, "partial") < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert azurite_http.uncommitted_blocks(container, "partial") >= 4, "the upload staged no blocks"
    relay.cut()
    uploading.join(60)
    assert not uploading.is_alive()
    assert failure and "unreachable" in str(failure[0])
    assert azurite_http.uncommitted_blocks(container, "partial") >= 4  # what was staged stays staged...
    assert azurite_http.list_keys(container) == ["kept"]  # ...and never became a blob


# --- bearer tokens over HTTPS (Azurite --oauth basic) ------------------------------------------


def token_storage(admin, credentials) -> AzureStorage:
    return AzureStorage(AzureSettings(**admin.plugin_settings()), credentials, ACCOUNT)


def test_bearer_token_from_federated_exchange(azurite_https, oidc_issuer, tmp_path):
    name = azurite_https.create_bucket("bearer")
    settings = AzureSettings(**azurite_https.plugin_settings())
    config = AzureAuthzConfig(tenant_id=TENANT, client_id=FEDERATED_APP, storage_account=azurite.ACCOUNT)
    credentials = azure_credentials(settings, config, oidc_issuer.id_token)
    storage = token_storage(azurite_https, credentials)
    storage.check_bucket(name)
    storage.upload(write(tmp_path / "in", b"via a bearer token"), name, "obj")
    assert azurite_https.get_object(name, "obj") == b"via a bearer token"
    assert storage.download(name, "obj", str(tmp_path / "out")).size == len(b"via a bearer token")


def test_expired_bearer_token_is_refused_with_a_clear_message(azurite_https):
    name = azurite_https.create_bucket("expiring")
    settings = AzureSettings(**azurite_https.plugin_settings())
    config = AzureAuthzConfig(
        tenant_id=TENANT, client_id=SHORT_LIVED_APP, client_secret=APP_SECRET, storage_account=azurite.ACCOUNT
    )
    credentials = azure_credentials(settings, config, lambda: pytest.fail("no id_token in client_secret mode"))
    token_storage(azurite_https, credentials).check_bucket(name)
    time.sleep(SHORT_LIFETIME + 1)
    # Known expiry: refused before any request.
    with pytest.raises(AccessDenied, match="the Azure access token expired at .*start the transfer again"):
        token_storage(azurite_https, credentials).check_bucket(name)
    # Unknown expiry: Azurite itself refuses the token.
    unknown_expiry = AzureCredentials(access_token=credentials.access_token)
    with pytest.raises(AccessDenied, match="denied \\(AuthenticationFailed\\)"):
        token_storage(azurite_https, unknown_expiry).check_bucket(name)


def test_bearer_token_needs_https(azurite_http, container):
    with pytest.raises(StorageError, match="access tokens need an https blob endpoint, not http://127.0.0.1"):
        AzureStorage(AzureSettings(**azurite_http.plugin_settings()), AzureCredentials(access_token="x.y.z"), ACCOUNT)


def test_untrusted_certificate_is_not_accepted(azurite_https):
    """Without the admin's ca_bundle, Azurite's certificate (local CA) is refused."""
    settings = AzureSettings(blob_endpoint=azurite_https.blob_endpoint, retries=0)
    storage = AzureStorage(settings, AzureCredentials(sas_token=azurite_https.account_sas()), ACCOUNT)
    with pytest.raises(StorageError):
        storage.check_bucket("any")


# --- credentials: only the user's, never the server's ------------------------------------------


SERVER_IDENTITY = {
    "AZURE_CLIENT_ID": "99999999-9999-4999-8999-999999999999",
    "AZURE_CLIENT_SECRET": "server-secret",
    "AZURE_TENANT_ID": "99999999-9999-4999-8999-999999999998",
    "AZURE_SUBSCRIPTION_ID": "99999999-9999-4999-8999-999999999997",
    "AZURE_SECRET": "server-secret",
    "AZURE_TENANT": "99999999-9999-4999-8999-999999999998",
    "AZURE_STORAGE_ACCOUNT": "serveraccount",
    "AZURE_STORAGE_KEY": azurite.ACCOUNT_KEY,
    "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={azurite.ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;",
    "AZURE_ACCESS_TOKEN": "server-token",
    "AZURE_AUTHORITY_HOST": "https://127.0.0.1:1",
    "AZURE_REGIONAL_AUTHORITY_NAME": "westus",
    "AZURE_FEDERATED_TOKEN_FILE": "/dev/null",
    "IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi/token",
    "MSI_ENDPOINT": "http://127.0.0.1:1/msi/token",
}


@pytest.fixture
def server_identity(monkeypatch, tmp_path):
    for name, value in SERVER_IDENTITY.items():
        monkeypatch.setenv(name, value)
    # A home without the server's Azure CLI login (~/.azure), which azure-identity would also read.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


def test_server_identity_in_environment_changes_nothing(server_identity, azurite_http, container, tmp_path):
    settings = AzureSettings(**azurite_http.plugin_settings())
    with pytest.raises(MissingCredentials):
        AzureStorage(settings, AzureCredentials(), ACCOUNT)
    storage = sas_storage(azurite_http)
    assert storage.account_url == azurite_http.account_url
    storage.upload(write(tmp_path / "in", b"mine"), container, "obj")
    assert azurite_http.get_object(container, "obj") == b"mine"
    denied = sas_storage(azurite_http, azurite_http.container_sas("elsewhere"))
    with pytest.raises(AccessDenied):  # not rescued by AZURE_STORAGE_KEY or the connection string
        denied.stat(container, "obj")


# --- credentials in the job --------------------------------------------------------------------


def test_no_sas_in_logs_or_errors(azurite_http, container, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    sas = azurite_http.container_sas(container)
    signature = dict(part.split("=", 1) for part in sas.split("&"))["sig"]
    storage = sas_storage(azurite_http, sas)
    storage.upload(write(tmp_path / "in", b"x"), container, "obj")
    with pytest.raises(ObjectNotFound) as missing:
        storage.download(container, "absent", str(tmp_path / "out"))
    with pytest.raises(AccessDenied) as denied:
        storage.stat("elsewhere", "obj")
    for text in (caplog.text, str(missing.value), str(denied.value), repr(storage.credential)):
        assert signature not in text and sas not in text

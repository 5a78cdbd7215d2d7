"""Each cloud's storage backend against its real local server, as the contract suite
(test_unit_storage_contract.py) takes it: a ``BackendCase`` per cloud, and one for a stand-in
cloud defined by a test (standin_cloud.py), which shows that a new cloud needs nothing else.

A case holds a fresh bucket, a backend with the account's own access to it, the server's own
access (to put and read objects behind the plugin's back), a backend whose endpoint nothing
listens on, credentials the backend must refuse, and a backend that may not use a bucket that
exists (the denial each cloud can show here: unknown keys on an IAM-enforcing moto, a SAS of another
container, a service account granted another bucket, a Swift user the container is not shared with).
"""

import contextlib
import importlib
import os
import socket
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Optional
from urllib.parse import urlsplit

import pytest
import requests

from galaxy_cloud_storage.providers import cloud
from galaxy_cloud_storage.providers.storage import ObjectInfo, StorageBackend
from galaxy_cloud_storage_testing import azurite, local_clouds, swift_aio

MiB = 1024 * 1024
CLOUDS = ("aws", "azure", "gcp", "openstack", "standin")
SERVED_CLOUDS = CLOUDS[:-1]


@dataclass
class Admin:
    """The server's own access to the case's objects."""

    put: Callable[[str, str, bytes], None]
    get: Callable[[str, str], bytes]
    keys: Callable[[str], list[str]]


@dataclass
class Denied:
    """A backend that may not use ``bucket``, which exists and holds ``key``."""

    backend: StorageBackend
    bucket: str
    key: str


@dataclass
class BackendCase:
    name: str
    bucket: str
    admin: Admin
    #: the backend with the account's access; keyword arguments override the admin's settings
    storage: Callable[..., StorageBackend]
    #: settings that make a 12 MiB object move in several parts each way
    small_parts: dict
    unreachable: Callable[[], StorageBackend]
    #: credentials the backend's class must refuse, and how to try them
    missing_credentials: list
    build: Callable[[Any], StorageBackend]
    denied: Callable[[], Denied]
    #: a backend whose credentials may not list the account's buckets
    may_not_list: Callable[[], StorageBackend]
    #: the requests a backend sends to its cloud within the block, as a list filled meanwhile
    requests_sent: Callable[[StorageBackend], ContextManager[list]]
    #: what of the case's credentials must never show in a message
    secrets: list[str] = field(default_factory=list)
    #: the port of the cloud's server, and the backend that reaches it at another address
    #: (``via(url)``, e.g. a fault_proxy.FaultProxy's), with the admin's settings overridden by
    #: keyword arguments; None for a cloud without a server (the stand-in)
    server_port: Optional[int] = None
    via: Optional[Callable[..., StorageBackend]] = None

    @property
    def noun(self) -> str:
        return self.storage().noun


def put_a_run_of_objects(put: Callable[[str, bytes], None]) -> tuple[list[str], list]:
    """30 objects under run/ and one under other/, through ``put(key, data)``; returns the keys
    stat_many is asked (out of order, one missing) and what it must answer."""
    for i in range(30):
        put(f"run/{i:02d}.txt", b"x" * i)
    put("other/z.txt", b"zz")
    keys = [f"run/{i:02d}.txt" for i in (3, 0, 29)] + ["run/missing.txt", "other/z.txt"]
    found = [ObjectInfo("run/03.txt", 3), ObjectInfo("run/00.txt", 0), ObjectInfo("run/29.txt", 29)]
    return keys, found + [None, ObjectInfo("other/z.txt", 2)]


@contextlib.contextmanager
def botocore_requests(backend):
    """Each HTTP request botocore sends (its retries included), from the client's own event."""
    sent = []

    def record(request, **kwargs):
        sent.append(request.url)

    backend.client.meta.events.register("before-send.s3", record)
    try:
        yield sent
    finally:
        backend.client.meta.events.unregister("before-send.s3", record)


@contextlib.contextmanager
def requests_library_requests(backend):
    """Each HTTP request sent through the requests library, which azure-core, google-cloud-storage
    and swiftclient all use (the process's: the block must make no other)."""
    sent, send = [], requests.Session.send

    def record(session, request, **kwargs):
        sent.append(request.url)
        return send(session, request, **kwargs)

    requests.Session.send = record
    try:
        yield sent
    finally:
        requests.Session.send = send


@contextlib.contextmanager
def directory_reads(backend):
    """The stand-in's "requests": each read of a directory."""
    sent, listdir = [], os.listdir

    def record(path):
        sent.append(path)
        return listdir(path)

    os.listdir = record
    try:
        yield sent
    finally:
        os.listdir = listdir


def fresh_name() -> str:
    return f"c{uuid.uuid4().hex[:12]}"


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


# -- the clouds ---------------------------------------------------------------------------------


def aws_case(moto_s3, moto_strict) -> BackendCase:
    from galaxy_cloud_storage.providers.aws import AwsSettings
    from galaxy_cloud_storage.providers.aws.storage import AwsCredentials, AwsStorage

    client = moto_s3.admin()
    bucket = fresh_name()
    client.create_bucket(Bucket=bucket)
    keys = AwsCredentials("user-test-key", "user-test-secret", "user-test-token")
    settings = AwsSettings(s3_endpoint_url=moto_s3.endpoint_url)

    def denied() -> Denied:
        unknown = AwsCredentials("AKIAUNKNOWNUNKNOWN01", "bogus-secret", "bogus-token")
        backend = AwsStorage(AwsSettings(s3_endpoint_url=moto_strict.endpoint_url), unknown)
        return Denied(backend, moto_strict.bucket, moto_strict.key)

    return BackendCase(
        name="aws",
        bucket=bucket,
        admin=Admin(
            put=lambda b, k, data: client.put_object(Bucket=b, Key=k, Body=data),
            get=lambda b, k: client.get_object(Bucket=b, Key=k)["Body"].read(),
            keys=lambda b: sorted(o["Key"] for o in client.list_objects_v2(Bucket=b).get("Contents", [])),
        ),
        storage=lambda **kwargs: AwsStorage(settings.model_copy(update=kwargs), keys),
        small_parts={"part_size": 5 * MiB},
        unreachable=lambda: AwsStorage(AwsSettings(s3_endpoint_url=f"http://127.0.0.1:{dead_port()}"), keys),
        missing_credentials=[
            AwsCredentials("", ""),
            AwsCredentials("key", ""),
            AwsCredentials("", "secret"),
            AwsCredentials("", "", "token"),
            None,
        ],
        build=lambda credentials: AwsStorage(
            AwsSettings(s3_endpoint_url=f"http://127.0.0.1:{dead_port()}"), credentials
        ),
        denied=denied,
        # An IAM user allowed s3:* on one bucket only (no s3:ListAllMyBuckets).
        may_not_list=lambda: AwsStorage(
            AwsSettings(s3_endpoint_url=moto_strict.endpoint_url), AwsCredentials(*moto_strict.scoped_keys)
        ),
        requests_sent=botocore_requests,
        secrets=["user-test-secret", "user-test-token", "bogus-secret", "bogus-token"],
        server_port=urlsplit(moto_s3.endpoint_url).port,
        via=lambda url, **kwargs: AwsStorage(settings.model_copy(update={"s3_endpoint_url": url, **kwargs}), keys),
    )


def azure_case(azurite_http) -> BackendCase:
    from galaxy_cloud_storage.providers.azure import AzureSettings
    from galaxy_cloud_storage.providers.azure.storage import AzureCredentials, AzureStorage

    account = {"storage_account": azurite.ACCOUNT}
    settings = AzureSettings(**azurite_http.plugin_settings())
    sas = azurite_http.account_sas()
    bucket = azurite_http.create_bucket(fresh_name())

    def denied() -> Denied:
        other = azurite_http.create_bucket(fresh_name())
        azurite_http.put_object(other, "present", b"x")
        backend = AzureStorage(settings, AzureCredentials(sas_token=azurite_http.container_sas(bucket)), account)
        return Denied(backend, other, "present")

    dead = AzureSettings(blob_endpoint=f"http://127.0.0.1:{dead_port()}/{{account}}", retries=1)
    return BackendCase(
        name="azure",
        bucket=bucket,
        admin=Admin(put=azurite_http.put_object, get=azurite_http.get_object, keys=azurite_http.list_keys),
        storage=lambda **kwargs: AzureStorage(
            settings.model_copy(update=kwargs), AzureCredentials(sas_token=sas), account
        ),
        small_parts={"block_size": MiB, "chunk_size": MiB},
        unreachable=lambda: AzureStorage(dead, AzureCredentials(sas_token="sv=x&sig=y"), account),
        missing_credentials=[None, AzureCredentials(), AzureCredentials(access_token="", sas_token="")],
        build=lambda credentials: AzureStorage(settings, credentials, account),
        denied=denied,
        # A container's SAS may not list the account's containers.
        may_not_list=lambda: AzureStorage(
            settings, AzureCredentials(sas_token=azurite_http.container_sas(bucket)), account
        ),
        requests_sent=requests_library_requests,
        secrets=[dict(part.split("=", 1) for part in sas.split("&"))["sig"]],
        server_port=azurite_http.port,
        via=lambda url, **kwargs: AzureStorage(
            settings.model_copy(update={"blob_endpoint": f"{url}/{{account}}", **kwargs}),
            AzureCredentials(sas_token=sas),
            account,
        ),
    )


def gcp_case(fake_gcs, gcs_cloud) -> BackendCase:
    from galaxy_cloud_storage.providers.gcp import GcpSettings
    from galaxy_cloud_storage.providers.gcp.storage import GcpCredentials, GcsStorage

    token = GcpCredentials("user-test-access-token")
    config = {"project": "user-project"}
    bucket = fake_gcs.create_bucket(fresh_name())
    settings = GcpSettings(storage_endpoint=fake_gcs.endpoint_url)

    def denied() -> Denied:
        # Through Cloud Storage's IAM front: a service account granted local_clouds.BUCKET only.
        gcs_cloud.admin.put_object(gcs_cloud.other_bucket, "present", b"x")
        return Denied(minted_backend(gcs_cloud), gcs_cloud.other_bucket, "present")

    return BackendCase(
        name="gcp",
        bucket=bucket,
        admin=Admin(put=fake_gcs.put_object, get=fake_gcs.get_object, keys=fake_gcs.list_keys),
        storage=lambda **kwargs: GcsStorage(settings.model_copy(update=kwargs), token, config),
        small_parts={"chunk_size": 4 * MiB},
        unreachable=lambda: GcsStorage(
            GcpSettings(storage_endpoint=f"http://127.0.0.1:{dead_port()}", retry_timeout=1), token, config
        ),
        missing_credentials=[GcpCredentials(""), None],
        build=lambda credentials: GcsStorage(settings, credentials, config),
        denied=denied,
        # Through the IAM front: object roles on one bucket, no storage.buckets.list on the project.
        may_not_list=lambda: minted_backend(gcs_cloud),
        requests_sent=requests_library_requests,
        secrets=[token.access_token],
        server_port=urlsplit(fake_gcs.endpoint_url).port,
        via=lambda url, **kwargs: GcsStorage(
            settings.model_copy(update={"storage_endpoint": url, **kwargs}), token, config
        ),
    )


def openstack_case(swift, swift_admin) -> BackendCase:
    from swift_fixtures import v1_token

    from galaxy_cloud_storage.providers.openstack import OpenStackSettings
    from galaxy_cloud_storage.providers.openstack.storage import SwiftCredentials, SwiftStorage

    settings = OpenStackSettings()
    reader_login = (swift_aio.READER_USER, swift_aio.READER_KEY)
    storage_url, token = v1_token(swift, swift_aio.ADMIN_USER, swift_aio.ADMIN_KEY)
    bucket = swift_admin.create_bucket(fresh_name())

    def denied() -> Denied:
        swift_admin.put_object(bucket, "present", b"x")
        reader = SwiftCredentials(*v1_token(swift, *reader_login))
        return Denied(SwiftStorage(settings, reader, {}), bucket, "present")

    dead_url = f"http://127.0.0.1:{dead_port()}/v1/AUTH_test"
    return BackendCase(
        name="openstack",
        bucket=bucket,
        admin=Admin(put=swift_admin.put_object, get=swift_admin.get_object, keys=swift_admin.list_keys),
        storage=lambda **kwargs: SwiftStorage(
            settings.model_copy(update=kwargs), SwiftCredentials(storage_url, token), {}
        ),
        small_parts={"segment_size": MiB},
        unreachable=lambda: SwiftStorage(settings, SwiftCredentials(dead_url, "some-token"), {}),
        missing_credentials=[None, SwiftCredentials("http://127.0.0.1:1/v1/AUTH_x", ""), SwiftCredentials("", "t")],
        build=lambda credentials: SwiftStorage(settings, credentials, {}),
        denied=denied,
        # A user who is no account admin (tempauth: not in .admin) may not list the containers.
        may_not_list=lambda: SwiftStorage(settings, SwiftCredentials(*v1_token(swift, *reader_login)), {}),
        requests_sent=requests_library_requests,
        secrets=[token, "some-token"],
        server_port=urlsplit(storage_url).port,
        via=lambda url, **kwargs: SwiftStorage(
            settings.model_copy(update=kwargs), SwiftCredentials(url + urlsplit(storage_url).path, token), {}
        ),
    )


def standin_case(directory) -> BackendCase:
    standin_cloud = defined_standin_cloud()

    root = directory / "standin-store"
    store = standin_cloud.DirectoryStore(str(root))
    bucket = store.create_bucket(fresh_name())
    token = store.grant("owner-token", bucket)
    settings = standin_cloud.DirectorySettings(root=str(root))
    credentials = standin_cloud.DirectoryCredentials(token)

    def denied() -> Denied:
        other = store.create_bucket(fresh_name())
        store.put_object(other, "present", b"x")
        return Denied(standin_cloud.DirectoryStorage(settings, credentials, {}), other, "present")

    return BackendCase(
        name="standin",
        bucket=bucket,
        admin=Admin(put=store.put_object, get=store.get_object, keys=store.list_keys),
        storage=lambda **kwargs: standin_cloud.DirectoryStorage(settings.model_copy(update=kwargs), credentials, {}),
        small_parts={"part_size": MiB},
        unreachable=lambda: standin_cloud.DirectoryStorage(
            standin_cloud.DirectorySettings(root=str(directory / "gone")), credentials, {}
        ),
        missing_credentials=[None, standin_cloud.DirectoryCredentials("")],
        build=lambda creds: standin_cloud.DirectoryStorage(settings, creds, {}),
        denied=denied,
        may_not_list=lambda: standin_cloud.DirectoryStorage(
            settings, standin_cloud.DirectoryCredentials("unknown-token"), {}
        ),
        requests_sent=directory_reads,
        secrets=[token],
    )


def defined_standin_cloud():
    """standin_cloud, its class defined (and so registered) anew: the registry forgets it after
    each test (standin_unregistered), so that no other test sees a fifth cloud."""
    if "standin_cloud" in sys.modules:
        return importlib.reload(sys.modules["standin_cloud"])
    return importlib.import_module("standin_cloud")


class NoLogin:
    """A stored-secret authorization's login: there is none to use."""

    username = "nobody"

    def id_token(self) -> str:
        raise AssertionError("a stored-secret mode asked for the user's login")

    access_token = id_token


def minted_backend(local: local_clouds.LocalCloud) -> StorageBackend:
    """A backend as the plugin makes one for a stored-secret authorization: its cloud plugin mints
    the credentials from the record's config, at the local cloud's endpoints."""
    plugin = cloud(local.provider)
    settings = plugin.settings_model(**local.settings)
    config = plugin.authz_config_model.model_validate(local.authz_config)
    return plugin.storage(settings, plugin.mint(settings, config, NoLogin()), config.public_dict())


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory):
    from gcp_servers import fake_gcs_server

    with fake_gcs_server(str(tmp_path_factory.mktemp("fake-gcs-contract") / "fake-gcs.log")) as (admin, _process):
        yield admin


@pytest.fixture(scope="session")
def gcs_cloud(tmp_path_factory):
    """fake-gcs-server behind Cloud Storage's IAM front and Google's token endpoints (local_clouds)."""
    local = local_clouds.start_cloud("gcp", str(tmp_path_factory.mktemp("gcp-cloud")))
    yield local
    local.stop()


@pytest.fixture(params=CLOUDS)
def case(request, tmp_path_factory) -> BackendCase:
    return build_case(request.param, request, tmp_path_factory)


@pytest.fixture(params=SERVED_CLOUDS)
def served_case(request, tmp_path_factory) -> BackendCase:
    """A cloud with a server of its own on 127.0.0.1, which a relay can stand in front of."""
    return build_case(request.param, request, tmp_path_factory)


def build_case(name: str, request, tmp_path_factory) -> BackendCase:
    if name == "aws":
        return aws_case(request.getfixturevalue("moto_s3"), request.getfixturevalue("moto_strict"))
    if name == "azure":
        return azure_case(request.getfixturevalue("azurite_http"))
    if name == "gcp":
        return gcp_case(request.getfixturevalue("fake_gcs"), request.getfixturevalue("gcs_cloud"))
    if name == "openstack":
        return openstack_case(request.getfixturevalue("swift"), request.getfixturevalue("swift_admin"))
    case = standin_case(tmp_path_factory.mktemp("standin"))
    request.addfinalizer(standin_unregistered)
    return case


def standin_unregistered() -> None:
    from galaxy_cloud_storage.providers.cloud import unregister

    unregister("standin")

"""providers.openstack.credentials.openstack_credentials: Swift v1 auth against the real Swift cluster
(galaxy_cloud_storage_testing/swift_aio.py); what is sent to Keystone v3 (OIDC federation, application credentials),
against ``FakeKeystone`` below. The same modes against a real Keystone: test_unit_keystone.py.

FakeKeystone is an in-process HTTP server standing in for Keystone (unit tests only): it answers
the token requests keystoneauth1 makes and records them, so that these tests see exactly what is
sent and to whom (invariants 3 and 4), and serves a catalog with two regions.
"""

import json
import logging
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from galaxy import exceptions

from galaxy_cloud_storage.authz.errors import ReauthenticationRequired
from galaxy_cloud_storage.providers.openstack import OpenStackAuthzConfig, OpenStackSettings
from galaxy_cloud_storage.providers.openstack.credentials import openstack_credentials
from galaxy_cloud_storage.providers.openstack.storage import SwiftStorage
from galaxy_cloud_storage_testing import swift_aio

ACCESS_TOKEN = "oidc-access-token-" + uuid.uuid4().hex
APP_CRED_ID = "0123456789abcdef0123456789abcdef"
APP_CRED_SECRET = "app-cred-secret-" + uuid.uuid4().hex
UNSCOPED, SCOPED = "unscoped-" + uuid.uuid4().hex, "scoped-" + uuid.uuid4().hex
CATALOG = [
    {
        "type": "object-store",
        "name": "swift",
        "endpoints": [
            {
                "interface": "public",
                "region": "RegionOne",
                "region_id": "RegionOne",
                "url": "https://swift-one.example.org/v1/AUTH_p",
            },
            {
                "interface": "internal",
                "region": "RegionOne",
                "region_id": "RegionOne",
                "url": "http://10.0.0.1/v1/AUTH_p",
            },
            {
                "interface": "public",
                "region": "RegionTwo",
                "region_id": "RegionTwo",
                "url": "https://swift-two.example.org/v1/AUTH_p",
            },
        ],
    },
    {"type": "identity", "name": "keystone", "endpoints": []},
]

pytest_plugins = ["swift_fixtures"]  # the session's Swift cluster: swift, swift_admin


class FakeKeystone(ThreadingHTTPServer):
    """Keystone's v3 token API as keystoneauth1 uses it, on 127.0.0.1 (see the module docstring)."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _KeystoneHandler)
        self.requests = []  # (method, path, headers, JSON body)
        self.refuse = False  # answer 401 to every token request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _KeystoneHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        self.server.requests.append(("POST", self.path, dict(self.headers), body))
        if self.server.refuse:
            return self._answer(401, {"error": {"code": 401, "title": "Unauthorized", "message": "refused"}})
        expires = {"expires_at": "2031-01-01T00:00:00.000000Z", "issued_at": "2030-12-31T23:00:00.000000Z"}
        user = {"id": "u1", "name": "alice", "domain": {"id": "default", "name": "Default"}}
        if self.path.startswith("/v3/OS-FEDERATION/"):
            return self._answer(201, {"token": {"methods": ["openid"], "user": user, **expires}}, UNSCOPED)
        if self.path == "/v3/auth/tokens":
            project = {"id": "a" * 32, "name": "demo", "domain": {"id": "default", "name": "Default"}}
            token = {
                "methods": body["auth"]["identity"]["methods"],
                "user": user,
                "project": project,
                "catalog": CATALOG,
                **expires,
            }
            return self._answer(201, {"token": token}, SCOPED)
        self._answer(404, {"error": {"code": 404}})

    do_GET = do_POST

    def _answer(self, status, body, subject_token=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if subject_token:
            self.send_header("X-Subject-Token", subject_token)
        self.end_headers()
        self.wfile.write(data)


def _serve(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture
def keystone():
    server = _serve(FakeKeystone())
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def server_identity(monkeypatch, tmp_path):
    """The server's own OpenStack identity, as environment variables and a clouds.yaml, pointing
    at a second Keystone that must never be asked (invariant 3)."""
    other = _serve(FakeKeystone())
    (tmp_path / "clouds.yaml").write_text(
        f"clouds:\n  envvars:\n    auth:\n      auth_url: {other.url}/v3\n      password: server-password\n"
    )
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "OS_AUTH_URL": f"{other.url}/v3", "OS_PASSWORD": "server-password", "OS_TOKEN": "server-token",
        "OS_USERNAME": "server", "OS_PROJECT_NAME": "server-project", "OS_CLOUD": "envvars",
        "OS_STORAGE_URL": "http://127.0.0.1:1/v1/AUTH_server", "OS_AUTH_TOKEN": "server-token",
        "ST_AUTH": f"{other.url}/auth/v1.0", "ST_USER": "server", "ST_KEY": "server-key",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    yield other
    assert other.requests == [], "the server's own identity was used"
    other.shutdown()
    other.server_close()


def settings_for(keystone, **kwargs) -> OpenStackSettings:
    return OpenStackSettings(enabled=True, keystone_url=f"{keystone.url}/v3", **kwargs)


def federation(**kwargs) -> OpenStackAuthzConfig:
    return OpenStackAuthzConfig(identity_provider="galaxy-idp", protocol="openid", project_name="demo", **kwargs)


def app_credential(**kwargs) -> OpenStackAuthzConfig:
    return OpenStackAuthzConfig(
        application_credential_id=APP_CRED_ID, application_credential_secret=APP_CRED_SECRET, **kwargs
    )


def no_token():
    raise AssertionError("the OIDC access token was asked for where none is needed")


# --- Keystone OIDC federation --------------------------------------------------------------------


def test_federation_exchanges_the_access_token_and_scopes_to_the_project(keystone, server_identity, caplog):
    caplog.set_level(logging.DEBUG)
    credentials = openstack_credentials(settings_for(keystone, region="RegionOne"), federation(), lambda: ACCESS_TOKEN)
    assert credentials.token == SCOPED
    assert credentials.storage_url == "https://swift-one.example.org/v1/AUTH_p"
    assert credentials.expires.year == 2031
    (_, federated_path, federated_headers, _), (_, scoped_path, _, scoped_body) = keystone.requests
    assert federated_path == "/v3/OS-FEDERATION/identity_providers/galaxy-idp/protocols/openid/auth"
    assert federated_headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert scoped_path == "/v3/auth/tokens"
    assert scoped_body["auth"]["identity"] == {"methods": ["token"], "token": {"id": UNSCOPED}}
    assert scoped_body["auth"]["scope"] == {"project": {"name": "demo", "domain": {"name": "Default"}}}
    for secret in (ACCESS_TOKEN, UNSCOPED, SCOPED):
        assert secret not in caplog.text
    assert SCOPED not in repr(credentials)


def test_federation_scopes_by_project_id(keystone):
    config = OpenStackAuthzConfig(identity_provider="galaxy-idp", protocol="openid", project_id="b" * 32)
    openstack_credentials(settings_for(keystone), config, lambda: ACCESS_TOKEN)
    assert keystone.requests[1][3]["auth"]["scope"] == {"project": {"id": "b" * 32}}


def test_the_records_region_picks_another_endpoint_of_the_admins_catalog(keystone):
    credentials = openstack_credentials(
        settings_for(keystone, region="RegionOne"), federation(region="RegionTwo"), lambda: ACCESS_TOKEN
    )
    assert credentials.storage_url == "https://swift-two.example.org/v1/AUTH_p"


def test_a_region_missing_from_the_catalog(keystone):
    with pytest.raises(
        exceptions.ItemAccessibilityException, match="no public object-store \\(Swift\\) endpoint in region 'Nowhere'"
    ):
        openstack_credentials(settings_for(keystone, region="Nowhere"), federation(), lambda: ACCESS_TOKEN)


def test_federation_refused_asks_to_log_in_again(keystone):
    keystone.refuse = True
    with pytest.raises(ReauthenticationRequired, match="log in to Galaxy again") as e:
        openstack_credentials(settings_for(keystone), federation(), lambda: ACCESS_TOKEN)
    assert ACCESS_TOKEN not in str(e.value)


def test_federation_without_an_access_token(keystone):
    with pytest.raises(ReauthenticationRequired):
        openstack_credentials(settings_for(keystone), federation(), lambda: "")
    assert keystone.requests == []


def test_the_records_auth_url_is_never_used(keystone, server_identity):
    """Invariant 4: only the admin's keystone_url is contacted, whatever the record says."""
    config = federation(auth_url=f"{server_identity.url}/v3")
    openstack_credentials(settings_for(keystone), config, lambda: ACCESS_TOKEN)
    assert len(keystone.requests) == 2


def test_keystone_url_without_v3_suffix(keystone):
    settings = OpenStackSettings(enabled=True, keystone_url=keystone.url)
    openstack_credentials(settings, federation(), lambda: ACCESS_TOKEN)
    assert keystone.requests[0][1].startswith("/v3/OS-FEDERATION/")


def test_unreachable_keystone_is_upstream_error():
    from galaxy_cloud_storage_testing.localgalaxy import free_port

    settings = OpenStackSettings(enabled=True, keystone_url=f"http://127.0.0.1:{free_port()}/v3")
    with pytest.raises(exceptions.UpstreamProxyError, match="could not be reached"):
        openstack_credentials(settings, federation(), lambda: ACCESS_TOKEN)


# --- Keystone application credentials ------------------------------------------------------------


def test_application_credential(keystone, server_identity, caplog):
    caplog.set_level(logging.DEBUG)
    credentials = openstack_credentials(settings_for(keystone), app_credential(), no_token)
    assert (credentials.token, credentials.storage_url) == (SCOPED, "https://swift-one.example.org/v1/AUTH_p")
    ((_, path, _, body),) = keystone.requests
    assert path == "/v3/auth/tokens"
    assert body["auth"]["identity"] == {
        "methods": ["application_credential"],
        "application_credential": {"id": APP_CRED_ID, "secret": APP_CRED_SECRET},
    }
    assert "scope" not in body["auth"]
    assert APP_CRED_SECRET not in caplog.text and SCOPED not in caplog.text


def test_application_credential_refused(keystone):
    keystone.refuse = True
    with pytest.raises(exceptions.ItemAccessibilityException, match="refused the application credential") as e:
        openstack_credentials(settings_for(keystone), app_credential(), no_token)
    assert APP_CRED_SECRET not in str(e.value)


def test_keystone_modes_need_auth_version_3(swift):
    settings = OpenStackSettings(enabled=True, auth_version="1", v1_auth_url=swift.auth_url, allow_stored_secrets=True)
    with pytest.raises(exceptions.ConfigDoesNotAllowException, match="auth version 1"):
        openstack_credentials(settings, app_credential(), no_token)


# --- Swift v1 auth (the real cluster) ------------------------------------------------------------


def v1_settings(swift) -> OpenStackSettings:
    return OpenStackSettings(**swift.admin().plugin_settings())


def v1_record(user=swift_aio.ADMIN_USER, key=swift_aio.ADMIN_KEY) -> OpenStackAuthzConfig:
    return OpenStackAuthzConfig(swift_user=user, swift_key=key)


def test_swift_v1(swift, swift_admin, server_identity, caplog):
    caplog.set_level(logging.DEBUG)
    credentials = openstack_credentials(v1_settings(swift), v1_record(), no_token)
    assert credentials.storage_url == f"{swift.url}/v1/AUTH_test"
    assert credentials.token.startswith("AUTH_tk") and credentials.expires is not None
    container = swift_admin.create_bucket(f"v1-{uuid.uuid4().hex[:8]}")
    SwiftStorage(v1_settings(swift), credentials, {}).check_bucket(container)
    assert credentials.token not in caplog.text and swift_aio.ADMIN_KEY not in caplog.text


def test_swift_v1_wrong_key(swift):
    with pytest.raises(exceptions.ItemAccessibilityException, match="Swift refused the key of user 'test:tester'") as e:
        openstack_credentials(v1_settings(swift), v1_record(key="wrong-key"), no_token)
    assert "wrong-key" not in str(e.value)


def test_swift_v1_unreachable():
    from galaxy_cloud_storage_testing.localgalaxy import free_port

    settings = OpenStackSettings(
        enabled=True, auth_version=1, v1_auth_url=f"http://127.0.0.1:{free_port()}/auth/v1.0", allow_stored_secrets=True
    )
    with pytest.raises(exceptions.UpstreamProxyError, match="could not be reached"):
        openstack_credentials(settings, v1_record(), no_token)


def test_swift_v1_needs_auth_version_1(keystone):
    with pytest.raises(exceptions.ConfigDoesNotAllowException, match="auth version 3"):
        openstack_credentials(settings_for(keystone), v1_record(), no_token)
    assert keystone.requests == []


# --- the record and the admin's settings -----------------------------------------------------------


def test_v1_record_holds_its_key_as_a_secret():
    record = v1_record()
    assert record.mode == "swift_v1" and record.uses_stored_secret
    assert record.public_dict() == {"swift_user": "test:tester", "project_domain_name": "Default"}
    assert record.secret_dict() == {"swift_key": swift_aio.ADMIN_KEY}


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"swift_user": "test:tester"}, "swift_key required"),
        ({"swift_key": "k"}, "swift_user required"),
        ({"swift_user": "a:b", "swift_key": "k", "project_name": "p"}, "not both"),
        ({"swift_user": "a:b", "swift_key": "k", "identity_provider": "i", "protocol": "openid"}, "not both"),
        ({"swift_user": "a b", "swift_key": "k"}, "swift_user"),
    ],
)
def test_v1_record_validation(raw, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        OpenStackAuthzConfig(**raw)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"enabled": True}, "keystone_url is required"),
        ({"enabled": True, "auth_version": "1", "allow_stored_secrets": True}, "v1_auth_url is required"),
        ({"enabled": True, "auth_version": "1", "v1_auth_url": "http://s/auth/v1.0"}, "allow_stored_secrets"),
        ({"enabled": True, "auth_version": "2", "keystone_url": "http://k/v3"}, "auth_version"),
    ],
)
def test_settings_validation(raw, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        OpenStackSettings(**raw)


def test_settings_modes():
    assert OpenStackSettings(enabled=True, keystone_url="http://k/v3").authz_modes == (
        "oidc_federation",
        "application_credential",
    )
    v1 = OpenStackSettings(enabled=True, auth_version=1, v1_auth_url="http://s/auth/v1.0", allow_stored_secrets=True)
    assert v1.auth_version == "1" and v1.authz_modes == ("swift_v1",)

"""providers.gcp.credentials.gcp_credentials against a real token server on 127.0.0.1
(galaxy_cloud_storage_testing/google_sts_server.py, a subprocess) that checks id_tokens as Google's STS does,
with the issuer's keys served over HTTP.

The OpenID issuer is an in-process HTTP server on 127.0.0.1 serving a discovery document and a
JWKS for a test key (the id_tokens are signed here, as the issuer would sign them).
"""

import json
import logging
import os
import threading
import time
from datetime import datetime, timedelta, UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from galaxy import exceptions
from gcp_servers import dead_endpoint, fake_gcs_server, token_server

from galaxy_cloud_storage.authz.errors import ReauthenticationRequired
from galaxy_cloud_storage.providers.gcp import GcpAuthzConfig, GcpSettings
from galaxy_cloud_storage.providers.gcp.credentials import gcp_credentials
from galaxy_cloud_storage.providers.gcp.storage import GcpCredentials

POOL = "projects/123456789/locations/global/workloadIdentityPools/galaxy-pool"
AUDIENCE = f"//iam.googleapis.com/{POOL}/providers/galaxy-oidc"
OTHER_AUDIENCE = f"//iam.googleapis.com/{POOL}/providers/not-there"
CLIENT_ID = "galaxy-cloud-storage"
BOUND_SA = "galaxy-transfer@galaxy-project.iam.gserviceaccount.com"
UNBOUND_SA = "someone-else@galaxy-project.iam.gserviceaccount.com"
KEY_SA = "key-holder@galaxy-project.iam.gserviceaccount.com"
SUBJECT = "user-42"
PROJECT = "galaxy-project"


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem_private(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pem_public(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


class Issuer:
    """An OpenID issuer's public half: discovery document and JWKS over HTTP; signs id_tokens."""

    def __init__(self):
        self.key = rsa_key()
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwks = {"keys": [{**jwk, "kid": "test-key", "use": "sig", "alg": "RS256"}]}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                documents = {
                    "/.well-known/openid-configuration": {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"},
                    "/jwks": jwks,
                }
                body = json.dumps(documents.get(self.path, {})).encode()
                self.send_response(200 if self.path in documents else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def id_token(self, key=None, **claims) -> str:
        now = int(time.time())
        payload = {"iss": self.url, "aud": CLIENT_ID, "sub": SUBJECT, "iat": now, "exp": now + 300, **claims}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": "test-key"})


@pytest.fixture(scope="module")
def issuer():
    issuer = Issuer()
    yield issuer
    issuer.server.shutdown()


@pytest.fixture(scope="module")
def sa_key():
    return rsa_key()


@pytest.fixture(scope="module")
def sts(issuer, sa_key, tmp_path_factory):
    config = {
        "providers": [{"name": AUDIENCE, "issuer": issuer.url, "allowed_audiences": [CLIENT_ID]}],
        "service_accounts": [
            {"email": BOUND_SA, "bindings": [f"principal://iam.googleapis.com/{POOL}/subject/{SUBJECT}"]},
            {"email": UNBOUND_SA, "bindings": [f"principal://iam.googleapis.com/{POOL}/subject/another-user"]},
            {"email": KEY_SA, "public_keys": {"sa-key-1": pem_public(sa_key)}},
        ],
        "token_lifetime": 1800,
    }
    with token_server(config, str(tmp_path_factory.mktemp("google-sts"))) as (url, log_path):
        yield url, log_path


@pytest.fixture
def settings(sts):
    url = sts[0]
    return GcpSettings(token_url=f"{url}/v1/token", iam_credentials_endpoint=url, oauth2_token_url=f"{url}/token")


def exchanges(sts) -> list[dict]:
    if not os.path.exists(sts[1]):
        return []
    with open(sts[1]) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def tokeninfo(sts, token: str) -> dict:
    return requests.get(f"{sts[0]}/v1/tokeninfo", params={"access_token": token}, timeout=10).json()


def federated(service_account=None) -> GcpAuthzConfig:
    return GcpAuthzConfig(audience=AUDIENCE, service_account=service_account, project=PROJECT)


def service_account_key(key, token_uri: str, kid: str = "sa-key-1") -> GcpAuthzConfig:
    key_file = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": kid,
        "private_key": pem_private(key),
        "client_email": KEY_SA,
        "client_id": "1234567890",
        "token_uri": token_uri,  # written by the user: never used
    }
    return GcpAuthzConfig(service_account_key=json.dumps(key_file), project=PROJECT)


# --- workload identity federation ------------------------------------------------------------------


def test_federated_token(settings, issuer, sts, caplog):
    caplog.set_level(logging.DEBUG)
    id_token = issuer.id_token()
    before = len(exchanges(sts))
    credentials = gcp_credentials(settings, federated(), lambda: id_token)

    assert isinstance(credentials, GcpCredentials)
    assert credentials.expiry.tzinfo is not None
    assert timedelta(minutes=25) < credentials.expiry - datetime.now(UTC) <= timedelta(minutes=30)
    info = tokeninfo(sts, credentials.access_token)  # a token the server issued, to the user's principal
    assert info["kind"] == "federated"
    assert info["sub"] == f"principal://iam.googleapis.com/{POOL}/subject/{SUBJECT}"
    assert info["scope"] == "https://www.googleapis.com/auth/devstorage.read_write"
    [exchange] = exchanges(sts)[before:]
    assert exchange["endpoint"] == "/v1/token" and exchange["audience"] == AUDIENCE and exchange["outcome"] == "ok"
    assert id_token not in caplog.text and credentials.access_token not in caplog.text


def test_federated_token_with_impersonation(settings, issuer, sts):
    before = len(exchanges(sts))
    credentials = gcp_credentials(settings, federated(BOUND_SA), issuer.id_token)

    info = tokeninfo(sts, credentials.access_token)
    assert info["kind"] == "service_account" and info["sub"] == f"serviceAccount:{BOUND_SA}"
    steps = exchanges(sts)[before:]
    assert [s["endpoint"] for s in steps] == [
        "/v1/token",
        f"/v1/projects/-/serviceAccounts/{BOUND_SA}:generateAccessToken",
    ]
    assert all(s["outcome"] == "ok" for s in steps)


def test_impersonation_denied(settings, issuer):
    with pytest.raises(
        exceptions.ItemAccessibilityException, match=f"act as {UNBOUND_SA}.*roles/iam.workloadIdentityUser"
    ) as e:
        gcp_credentials(settings, federated(UNBOUND_SA), issuer.id_token)
    assert "getAccessToken' denied" in str(e.value)


@pytest.mark.parametrize(
    "claims,error,message",
    [
        ({"exp": int(time.time()) - 3600}, ReauthenticationRequired, "did not accept your login token .*expired"),
        (
            {"aud": "another-client"},
            exceptions.ItemAccessibilityException,
            "does not accept this Galaxy's login tokens .*audience",
        ),
        (
            {"iss": "https://accounts.example.org"},
            exceptions.ItemAccessibilityException,
            "issuer URI and allowed audiences",
        ),
    ],
)
def test_refused_id_tokens(settings, issuer, sts, claims, error, message):
    id_token = issuer.id_token(**claims)
    with pytest.raises(error, match=message) as e:
        gcp_credentials(settings, federated(BOUND_SA), lambda: id_token)
    assert id_token not in str(e.value)
    assert exchanges(sts)[-1]["outcome"].startswith("invalid_grant")


def test_id_token_signed_by_another_key(settings, issuer):
    with pytest.raises(ReauthenticationRequired, match="Invalid ID Token signature"):
        gcp_credentials(settings, federated(), lambda: issuer.id_token(key=rsa_key()))


def test_unknown_pool_provider(settings, issuer):
    config = GcpAuthzConfig(audience=OTHER_AUDIENCE, project=PROJECT)
    with pytest.raises(exceptions.ItemAccessibilityException, match="Check the audience"):
        gcp_credentials(settings, config, issuer.id_token)


def test_relogin_needed_passes_through(settings):
    def no_token():
        raise ReauthenticationRequired("Log in again")

    with pytest.raises(ReauthenticationRequired, match="Log in again"):
        gcp_credentials(settings, federated(), no_token)


def test_token_endpoint_unreachable(issuer):
    dead = dead_endpoint()
    settings = GcpSettings(
        token_url=f"{dead}/v1/token", iam_credentials_endpoint=dead, oauth2_token_url=f"{dead}/token"
    )
    with pytest.raises(exceptions.UpstreamProxyError, match="could not be reached"):
        gcp_credentials(settings, federated(), issuer.id_token)


def test_server_identity_and_environment_are_never_used(settings, issuer, sts, monkeypatch, tmp_path):
    bogus_key = tmp_path / "server-key.json"
    bogus_key.write_text('{"type": "service_account", "client_email": "server@x.iam.gserviceaccount.com"}')
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(bogus_key))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "server-project")
    monkeypatch.setenv("GCE_METADATA_HOST", dead_endpoint()[len("http://") :])
    monkeypatch.setenv("GCE_METADATA_IP", dead_endpoint()[len("http://") :])
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    credentials = gcp_credentials(settings, federated(BOUND_SA), issuer.id_token)
    assert tokeninfo(sts, credentials.access_token)["sub"] == f"serviceAccount:{BOUND_SA}"


# --- service account keys ---------------------------------------------------------------------------


def test_service_account_key_goes_to_the_admins_token_url(settings, sa_key, sts):
    before = len(exchanges(sts))

    def never():
        raise AssertionError("no id_token is needed for a service account key")

    # The key's own token_uri is an address nothing listens at: used, it would fail.
    credentials = gcp_credentials(settings, service_account_key(sa_key, f"{dead_endpoint()}/token"), never)

    info = tokeninfo(sts, credentials.access_token)
    assert info["sub"] == f"serviceAccount:{KEY_SA}" and "devstorage.read_write" in info["scope"]
    [exchange] = exchanges(sts)[before:]
    assert exchange["endpoint"] == "/token" and exchange["service_account"] == KEY_SA and exchange["outcome"] == "ok"


def test_service_account_key_not_registered(settings):
    with pytest.raises(
        exceptions.ItemAccessibilityException, match="refused the stored service account key .*Invalid JWT Signature"
    ):
        gcp_credentials(settings, service_account_key(rsa_key(), "https://oauth2.googleapis.com/token"), lambda: "")


def test_no_token_in_logs(settings, issuer, sts, sa_key, caplog):
    """Neither the server's exchange log nor this process's logs at DEBUG (google-auth's
    included) hold an id_token, an issued token or a key."""
    caplog.set_level(logging.DEBUG)
    id_token = issuer.id_token()
    federated_credentials = gcp_credentials(settings, federated(BOUND_SA), lambda: id_token)
    key_config = service_account_key(sa_key, "https://oauth2.googleapis.com/token")
    key_credentials = gcp_credentials(settings, key_config, lambda: "")
    with open(sts[1]) as fh:
        server_log = fh.read()
    private_key = json.loads(key_config.service_account_key)["private_key"].splitlines()[1]
    for log in (server_log, caplog.text):
        assert id_token.split(".")[2] not in log  # not even the signature
        assert federated_credentials.access_token not in log and key_credentials.access_token not in log
        assert private_key not in log


def test_exchanged_token_reaches_storage(settings, issuer, sts, tmp_path):
    """The job's side: the credentials' JSON form, back into a backend at the admin's endpoint,
    sends the exchanged token as Bearer (fake-gcs-server itself checks none)."""
    from galaxy_cloud_storage.providers.gcp.storage import GcsStorage

    credentials = gcp_credentials(settings, federated(BOUND_SA), issuer.id_token)
    in_job = GcpCredentials.from_json(json.loads(json.dumps(credentials.to_json())))
    assert in_job == credentials
    with fake_gcs_server(str(tmp_path / "fake-gcs.log")) as (admin, _process):
        admin.create_bucket("bucket")
        admin.put_object("bucket", "a.txt", b"hello")
        storage = GcsStorage(
            settings.model_copy(update={"storage_endpoint": admin.endpoint_url}), in_job, {"project": PROJECT}
        )
        sent = []
        storage.session.hooks["response"].append(
            lambda response, **kw: sent.append(response.request.headers["Authorization"])
        )
        storage.download("bucket", "a.txt", str(tmp_path / "a.txt"))
    assert (tmp_path / "a.txt").read_bytes() == b"hello"
    assert set(sent) == {f"Bearer {credentials.access_token}"}
    assert tokeninfo(sts, sent[0][len("Bearer ") :])["sub"] == f"serviceAccount:{BOUND_SA}"

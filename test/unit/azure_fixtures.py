"""Real servers on 127.0.0.1 for the Azure tests: Azurite (HTTP, and HTTPS with --oauth basic),
the local Entra token endpoint (galaxy_cloud_storage_testing/entra_token_server.py) and an OpenID issuer.

The issuer is an in-process HTTP server (a thread) serving a discovery document and a JWKS, the two
documents Entra reads from a real OpenID provider to check a federated assertion; the id_tokens are
signed here with its key, as the provider would sign them. Everything else is a subprocess.
"""

import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from galaxy_cloud_storage_testing import azurite, entra_token_server, localgalaxy
from galaxy_cloud_storage_testing.local_ca import local_certificates

TENANT = "7b1f6f4e-2f7d-4c1a-9a0e-3d4c5b6a7f80"
FEDERATED_APP = "11111111-2222-4333-8444-555555555555"
SECRET_APP = "22222222-3333-4444-8555-666666666666"
SHORT_LIVED_APP = "33333333-4444-4555-8666-777777777777"
APP_SECRET = "local-test-app-secret"  # an app of a token server on 127.0.0.1 that forgets all on exit
SUBJECT = "galaxy-user-1"
AUDIENCE = "api://AzureADTokenExchange"
SHORT_LIFETIME = 3  # seconds


@dataclass
class OidcIssuer:
    """An OpenID issuer's public documents, and id_tokens signed with its key."""

    url: str
    key: rsa.RSAPrivateKey
    server: ThreadingHTTPServer

    def id_token(self, sub: str = SUBJECT, aud: str = AUDIENCE, lifetime: int = 300, key=None, iss=None) -> str:
        now = int(time.time())
        claims = {"iss": iss or self.url, "sub": sub, "aud": aud, "iat": now - 5, "nbf": now - 5, "exp": now + lifetime}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": "issuer-key-1"})


def _issuer_handler(url: str, key: rsa.RSAPrivateKey):
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    documents = {
        "/.well-known/openid-configuration": {"issuer": url, "jwks_uri": f"{url}/jwks"},
        "/jwks": {"keys": [{**public, "kid": "issuer-key-1", "use": "sig", "alg": "RS256"}]},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = documents.get(self.path)
            data = json.dumps(body or {"error": "not found"}).encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture(scope="session")
def oidc_issuer():
    port = localgalaxy.free_port()
    url = f"http://127.0.0.1:{port}"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = ThreadingHTTPServer(("127.0.0.1", port), _issuer_handler(url, key))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield OidcIssuer(url, key, server)
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    return local_certificates(str(tmp_path_factory.mktemp("local-ca")))


def _start_azurite(tmp_path_factory, name: str, https=None):
    port = localgalaxy.free_port()
    directory = tmp_path_factory.mktemp(name)
    process = azurite.start(port, str(directory / "data"), str(directory / "azurite.log"), https=https)
    admin = azurite.AzuriteAdmin(port, https=https)
    try:
        admin.wait(process)
    except Exception:
        localgalaxy.stop(process, timeout=5)
        raise
    return process, admin


@pytest.fixture(scope="session")
def azurite_http(tmp_path_factory):
    process, admin = _start_azurite(tmp_path_factory, "azurite-http")
    yield admin
    localgalaxy.stop(process, timeout=10)


@dataclass
class TokenServer:
    authority_host: str
    record_path: str

    def exchanges(self) -> list[dict]:
        return entra_token_server.exchanges(self.record_path)


@pytest.fixture(scope="session")
def entra(tmp_path_factory, certificates, oidc_issuer):
    directory = tmp_path_factory.mktemp("entra")
    apps = {
        "apps": [
            {
                "tenant": TENANT,
                "client_id": FEDERATED_APP,
                "federated_credentials": [{"issuer": oidc_issuer.url, "subject": SUBJECT, "audiences": [AUDIENCE]}],
            },
            {"tenant": TENANT, "client_id": SECRET_APP, "client_secret": APP_SECRET},
            {
                "tenant": TENANT,
                "client_id": SHORT_LIVED_APP,
                "client_secret": APP_SECRET,
                "token_lifetime": SHORT_LIFETIME,
            },
        ]
    }
    config = directory / "apps.json"
    config.write_text(json.dumps(apps))
    port = localgalaxy.free_port()
    record = str(directory / "exchanges.jsonl")
    process = entra_token_server.start(
        port, str(config), certificates.cert, certificates.key, str(directory / "entra.log"), str(directory), record
    )
    url = f"https://127.0.0.1:{port}"
    import requests

    try:
        azurite.wait_until(
            lambda: requests.get(
                f"{url}/{TENANT}/v2.0/.well-known/openid-configuration", timeout=2, verify=certificates.ca
            ).ok,
            process, "the Entra token server", 30,
        )  # fmt: skip
    except Exception:
        localgalaxy.stop(process, timeout=5)
        raise
    yield TokenServer(url, record)
    localgalaxy.stop(process, timeout=10)


@pytest.fixture(scope="session")
def azurite_https(tmp_path_factory, certificates, entra):
    process, admin = _start_azurite(tmp_path_factory, "azurite-https", https=certificates)
    admin.authority_host = entra.authority_host
    yield admin
    localgalaxy.stop(process, timeout=10)


@pytest.fixture
def container(azurite_http) -> str:
    """A fresh container on the HTTP Azurite."""
    return azurite_http.create_bucket(f"c{uuid.uuid4().hex[:20]}")

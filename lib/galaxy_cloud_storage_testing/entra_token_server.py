"""The Microsoft identity platform's token endpoint, on 127.0.0.1 over HTTPS, for tests and the demo.

Entra ID cannot run locally; this plays the part of it that the plugin uses, in the spirit of
moto_sts_server.py: what azure-identity 1.27 and MSAL 1.39 ask for, checked the way Entra checks it.

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``: MSAL's tenant discovery (instance
  discovery at login.microsoftonline.com is off in the plugin).
- ``GET /{tenant}/discovery/v2.0/keys``: the keys of the access tokens it issues.
- ``POST /{tenant}/oauth2/v2.0/token``, ``grant_type=client_credentials`` with one
  ``scope=<resource>/.default`` and either
  * ``client_assertion`` (``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``),
    checked as Entra checks a federated identity credential of the app: a record whose issuer and
    subject equal the assertion's ``iss`` and ``sub`` (AADSTS70021), an ``aud`` among the record's
    audiences (AADSTS700212), a signature by a key of the issuer's JWKS, found through its discovery
    document (AADSTS700027), not expired (AADSTS700024); or
  * ``client_secret`` equal to the app's (AADSTS7000215).
  The answer is an access token JWT (RS256, ``iss https://sts.windows.net/{tenant}/``, ``aud`` the
  resource, e.g. ``https://storage.azure.com``) that Azurite ``--oauth basic`` accepts, living the
  app's ``token_lifetime`` seconds (default ``--lifetime``).

Errors are Entra's JSON: ``error``, ``error_description`` starting with the AADSTS code, ``error_codes``.

Apps come from a JSON file (``--config``)::

    {"apps": [{"tenant": "<uuid>", "client_id": "<uuid>", "client_secret": "optional",
               "token_lifetime": 3600,
               "federated_credentials": [{"issuer": "https://op", "subject": "user-1",
                                          "audiences": ["api://AzureADTokenExchange"]}]}]}

or from the command line for one app (``--tenant --client-id --issuer --subject --audience
--client-secret``). With ``--record PATH`` (or ``ENTRA_TOKEN_SERVER_LOG``), every token request
appends one JSON line there: time, tenant, client_id, grant (``client_assertion`` or
``client_secret``), the assertion's iss, sub and aud and its SHA-256, and the outcome (``issued``
or the AADSTS code). Never a token or a secret.
"""

import argparse
import hashlib
import json
import os
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qs

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from galaxy_cloud_storage_testing import serve_until_interrupted

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
RECORD_ENV = "ENTRA_TOKEN_SERVER_LOG"
DEFAULT_LIFETIME = 3600
ACCESS_TOKEN_KEY_ID = "local-entra-1"
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class FederatedCredential:
    issuer: str
    subject: str
    audiences: tuple[str, ...] = ("api://AzureADTokenExchange",)


@dataclass(frozen=True)
class App:
    tenant: str
    client_id: str
    client_secret: Optional[str] = field(default=None, repr=False)
    federated_credentials: tuple[FederatedCredential, ...] = ()
    token_lifetime: Optional[int] = None


class EntraError(Exception):
    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"AADSTS{code}")
        self.status, self.error, self.code, self.description = status, error, code, description

    def body(self) -> dict:
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {uuid.uuid4()}",
            "error_codes": [self.code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }


class TokenService:
    """The checks and the tokens, independent of HTTP."""

    def __init__(self, apps: list[App], lifetime: int = DEFAULT_LIFETIME, record_path: Optional[str] = None,
                 issuer_ca_bundle: Optional[str] = None) -> None:  # fmt: skip
        self.apps = {(app.tenant, app.client_id): app for app in apps}
        self.tenants = {app.tenant for app in apps}
        self.lifetime = lifetime
        self.record_path = record_path
        self.issuer_verify = issuer_ca_bundle or True
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._jwks_clients: dict[str, jwt.PyJWKClient] = {}
        self._lock = threading.Lock()

    # -- documents -------------------------------------------------------------------------------

    def discovery(self, base_url: str, tenant: str) -> dict:
        self._check_tenant(tenant)
        return {
            "issuer": f"{base_url}/{tenant}/v2.0",
            "authorization_endpoint": f"{base_url}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base_url}/{tenant}/oauth2/v2.0/token",
            "jwks_uri": f"{base_url}/{tenant}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "tenant_region_scope": "EU",
        }

    def jwks(self) -> dict:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.signing_key.public_key()))
        return {"keys": [{**public, "kid": ACCESS_TOKEN_KEY_ID, "use": "sig", "alg": "RS256"}]}

    # -- token endpoint --------------------------------------------------------------------------

    def token(self, tenant: str, form: dict[str, str]) -> dict:
        record = {"time": time.time(), "tenant": tenant, "client_id": form.get("client_id"), "grant": None}
        try:
            response = self._token(tenant, form, record)
            record["outcome"] = "issued"
            return response
        except EntraError as e:
            record["outcome"] = f"AADSTS{e.code}"
            raise
        finally:
            self._record(record)

    def _token(self, tenant: str, form: dict[str, str], record: dict) -> dict:
        self._check_tenant(tenant)
        if form.get("grant_type") != "client_credentials":
            raise EntraError(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        app = self.apps.get((tenant, form.get("client_id", "")))
        if app is None:
            raise EntraError(
                400, "unauthorized_client", 700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory '{tenant}'.",
            )  # fmt: skip
        resource = self._resource(form.get("scope", ""))
        if "client_assertion" in form:
            record["grant"] = "client_assertion"
            self._check_assertion(app, form, record)
        elif "client_secret" in form:
            record["grant"] = "client_secret"
            if app.client_secret is None or form["client_secret"] != app.client_secret:
                raise EntraError(
                    401, "invalid_client", 7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                    f"secret value, not the client secret ID, for a secret added to app '{app.client_id}'.",
                )  # fmt: skip
        else:
            raise EntraError(
                401, "invalid_client", 7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )  # fmt: skip
        return self._access_token(app, resource)

    def _check_tenant(self, tenant: str) -> None:
        if tenant not in self.tenants:
            raise EntraError(
                400, "invalid_tenant", 90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
                "into the correct cloud.",
            )  # fmt: skip

    @staticmethod
    def _resource(scope: str) -> str:
        defaults = [s for s in scope.split() if s.endswith("/.default")]
        if len(defaults) != 1:
            raise EntraError(
                400, "invalid_scope", 1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
                "value with /.default suffixed to the resource identifier (application ID URI).",
            )  # fmt: skip
        return defaults[0][: -len("/.default")]

    def _check_assertion(self, app: App, form: dict[str, str], record: dict) -> None:
        assertion = form["client_assertion"]
        record["assertion_sha256"] = hashlib.sha256(assertion.encode()).hexdigest()
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise EntraError(
                400, "invalid_request", 70002,
                f"client_assertion_type must be '{CLIENT_ASSERTION_TYPE}'.",
            )  # fmt: skip
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise EntraError(400, "invalid_client", 50027, "JWT token is invalid or malformed.") from None
        issuer, subject, audience = claims.get("iss", ""), claims.get("sub", ""), claims.get("aud", [])
        audiences = [audience] if isinstance(audience, str) else list(audience)
        record.update({"iss": issuer, "sub": subject, "aud": audiences})
        matching = [c for c in app.federated_credentials if c.issuer == issuer and c.subject == subject]
        if not matching:
            raise EntraError(
                400, "invalid_client", 70021,
                "No matching federated identity record found for presented assertion. "
                f"Assertion Issuer: '{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: "
                f"'{','.join(audiences)}'.",
            )  # fmt: skip
        if not any(set(audiences) & set(c.audiences) for c in matching):
            raise EntraError(
                400, "invalid_client", 700212,
                "No matching federated identity record found for presented assertion audience "
                f"'{','.join(audiences)}'.",
            )  # fmt: skip
        try:
            key = self._jwks_client(issuer).get_signing_key_from_jwt(assertion)
            jwt.decode(
                assertion, key.key, algorithms=["RS256", "ES256"], options={"verify_exp": False, "verify_aud": False}
            )
        except (jwt.PyJWTError, requests.RequestException, KeyError, ValueError) as e:
            raise EntraError(
                400, "invalid_client", 700027,
                f"Client assertion failed signature validation against the keys of issuer '{issuer}' "
                f"({type(e).__name__}).",
            ) from e  # fmt: skip
        now = int(time.time())
        if int(claims.get("exp", 0)) <= now or int(claims.get("nbf", 0)) > now + 300:
            raise EntraError(
                400, "invalid_client", 700024,
                f"Client assertion is not within its valid time range. Current time: {now}, assertion valid "
                f"from {claims.get('nbf', claims.get('iat'))}, expiry time of assertion {claims.get('exp')}.",
            )  # fmt: skip

    def _jwks_client(self, issuer: str) -> jwt.PyJWKClient:
        with self._lock:
            if issuer not in self._jwks_clients:
                discovery = requests.get(
                    f"{issuer.rstrip('/')}/.well-known/openid-configuration", timeout=10, verify=self.issuer_verify
                )
                discovery.raise_for_status()
                context = ssl.create_default_context(
                    cafile=self.issuer_verify if isinstance(self.issuer_verify, str) else None
                )
                self._jwks_clients[issuer] = jwt.PyJWKClient(
                    discovery.json()["jwks_uri"], lifespan=60, ssl_context=context
                )
            return self._jwks_clients[issuer]

    def _access_token(self, app: App, resource: str) -> dict:
        lifetime = app.token_lifetime if app.token_lifetime is not None else self.lifetime
        now = int(time.time())
        object_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{app.tenant}/{app.client_id}"))
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{app.tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "appid": app.client_id,
            "appidacr": "2" if app.client_secret is None else "1",
            "idtyp": "app",
            "oid": object_id,
            "sub": object_id,
            "tid": app.tenant,
            "uti": uuid.uuid4().hex,
            "ver": "1.0",
        }
        token = jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": ACCESS_TOKEN_KEY_ID})
        return {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}

    def _record(self, record: dict) -> None:
        if self.record_path:
            with self._lock, open(self.record_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")


class _Handler(BaseHTTPRequestHandler):
    server_version = "LocalEntra/1.0"
    service: TokenService
    base_url: str

    def log_message(self, format, *args):  # the request line only: a token never goes in a URL
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _parts(self) -> list[str]:
        return [p for p in self.path.split("?", 1)[0].split("/") if p]

    def do_GET(self):
        parts = self._parts()
        try:
            if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                return self._send(200, self.service.discovery(self.base_url, parts[0]))
            if len(parts) == 4 and parts[1:] == ["discovery", "v2.0", "keys"]:
                return self._send(200, self.service.jwks())
        except EntraError as e:
            return self._send(e.status, e.body())
        self._send(404, {"error": "not_found"})

    def do_POST(self):
        parts = self._parts()
        if not (len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]):
            return self._send(404, {"error": "not_found"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._send(413, {"error": "invalid_request"})
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode(), keep_blank_values=True).items()}
        try:
            self._send(200, self.service.token(parts[0], form))
        except EntraError as e:
            self._send(e.status, e.body())


def serve(service: TokenService, host: str, port: int, cert: str, key: str) -> ThreadingHTTPServer:
    """A server (not yet serving) for ``service`` at https://host:port."""
    handler = type("Handler", (_Handler,), {"service": service, "base_url": f"https://{host}:{port}"})
    server = ThreadingHTTPServer((host, port), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def load_apps(path: str) -> list[App]:
    with open(path) as fh:
        raw = json.load(fh)
    return [
        App(
            tenant=a["tenant"], client_id=a["client_id"], client_secret=a.get("client_secret"),
            token_lifetime=a.get("token_lifetime"),
            federated_credentials=tuple(
                FederatedCredential(c["issuer"], c["subject"], tuple(c.get("audiences") or ["api://AzureADTokenExchange"]))
                for c in a.get("federated_credentials", [])
            ),
        )
        for a in raw.get("apps", [])
    ]  # fmt: skip


# -- for the harness ----------------------------------------------------------------------------


def start(port: int, config_path: str, cert: str, key: str, log_path: str, cwd: str, record_path: Optional[str] = None,
          lifetime: int = DEFAULT_LIFETIME, issuer_ca_bundle: Optional[str] = None):  # fmt: skip
    """This server as a subprocess on https://127.0.0.1:``port`` (``localgalaxy.start``)."""
    from galaxy_cloud_storage_testing import localgalaxy

    command = [sys.executable, "-m", __spec__.name, "--port", str(port), "--config", config_path,
               "--cert", cert, "--key", key, "--lifetime", str(lifetime)]  # fmt: skip
    if record_path:
        command += ["--record", record_path]
    if issuer_ca_bundle:
        command += ["--issuer-ca-bundle", issuer_ca_bundle]
    return localgalaxy.start(command, log_path, cwd)


def exchanges(record_path: str) -> list[dict]:
    """The token requests answered so far, oldest first."""
    if not os.path.exists(record_path):
        return []
    with open(record_path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="server certificate (PEM), e.g. from local_ca.py")
    parser.add_argument("--key", required=True)
    parser.add_argument("--config", help="JSON file of apps (see above)")
    parser.add_argument("--tenant")
    parser.add_argument("--client-id")
    parser.add_argument("--client-secret")
    parser.add_argument("--issuer")
    parser.add_argument("--subject")
    parser.add_argument("--audience", action="append")
    parser.add_argument("--lifetime", type=int, default=DEFAULT_LIFETIME, help="access token lifetime (s)")
    parser.add_argument("--record", default=os.environ.get(RECORD_ENV))
    parser.add_argument("--issuer-ca-bundle", help="CA bundle to reach the assertion issuers over https")
    args = parser.parse_args(argv)
    apps = load_apps(args.config) if args.config else []
    if args.tenant and args.client_id:
        federated = (
            (FederatedCredential(args.issuer, args.subject, tuple(args.audience or ["api://AzureADTokenExchange"])),)
            if args.issuer
            else ()
        )
        apps.append(App(args.tenant, args.client_id, args.client_secret, federated))
    if not apps:
        parser.error("no app: give --config or --tenant and --client-id")
    service = TokenService(apps, args.lifetime, args.record, args.issuer_ca_bundle)
    server = serve(service, args.host, args.port, args.cert, args.key)
    serve_until_interrupted(
        server, f"Entra token endpoint at https://{args.host}:{args.port}/<tenant>/oauth2/v2.0/token"
    )


if __name__ == "__main__":
    main()

"""Google's token endpoints on 127.0.0.1, for the tests and the demo: a real OAuth 2.0 server that
checks what Google checks, in the spirit of moto_sts_server.py. Standard library HTTP server.

- ``POST /v1/token``: Security Token Service, RFC 8693 token exchange as google-auth's
  external-account credentials call it. The subject token (the user's OIDC id_token) is checked as
  Google checks it for an OIDC workload identity pool provider: ``audience`` names a configured
  provider; the token's ``iss`` is the provider's issuer; its signature verifies with a key of the
  issuer's JWKS (found through its discovery document); its ``aud`` is one of the provider's
  allowed audiences (Google's default: the provider's full resource name, with or without
  ``https:``); it has not expired. The answer is a federated access token for the principal
  ``principal://iam.googleapis.com/<pool>/subject/<sub>``.
- ``POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken``: IAM Credentials, with a
  federated token as Bearer; granted only to a principal bound to the service account
  (roles/iam.workloadIdentityUser: ``bindings`` lists ``principal://...`` or ``principalSet://.../*``).
- ``POST /token``: the OAuth 2.0 JWT-bearer grant of service account keys: the assertion must be
  signed by a registered public key (``kid``) of the service account it names (``iss``), for
  Google's token endpoint or this one (``aud``), unexpired.
- ``GET /v1/tokeninfo?access_token=...``: what the server knows of a token it issued (principal,
  scope, expiry), for a proxy in front of a storage server that checks no credentials.

Issued tokens are opaque random strings remembered with their expiry. Errors are Google's:
``{"error": "invalid_grant", "error_description": ...}`` from the OAuth endpoints,
``{"error": {"code", "message", "status"}}`` from IAM. With ``--log PATH``, each exchange appends a
JSON line (time, endpoint, public claims, the SHA-256 of the subject token or assertion, outcome),
never a token.

Configuration (``--config FILE``, JSON)::

    {"providers": [{
        "name": "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/galaxy/providers/oidc",
        "issuer": "http://127.0.0.1:8443", "allowed_audiences": ["galaxy-client-id"]}],
     "service_accounts": [{"email": "transfer@proj.iam.gserviceaccount.com",
                           "bindings": ["principalSet://iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/galaxy/*"],
                           "public_keys": {"KEY_ID": "-----BEGIN PUBLIC KEY-----..."}}],
     "token_lifetime": 3600}
"""

import argparse
import hashlib
import json
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import jwt
import requests

from galaxy_cloud_storage_testing import serve_until_interrupted

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ID_TOKEN_TYPES = {"urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token"}
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
IAM_HOST = "//iam.googleapis.com/"
GENERATE_ACCESS_TOKEN = re.compile(r"^/v1/projects/-/serviceAccounts/([^/:]+):generateAccessToken$")
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
SIGNING_ALGORITHMS = ["RS256", "ES256"]
LEEWAY = 30  # seconds of clock skew tolerated, as Google does


class Refused(Exception):
    def __init__(self, status: int, body: dict, outcome: str):
        super().__init__(outcome)
        self.status, self.body, self.outcome = status, body, outcome


def oauth_error(error: str, description: str, status: int = 400) -> Refused:
    return Refused(status, {"error": error, "error_description": description}, f"{error}: {description}")


def api_error(code: int, status: str, message: str) -> Refused:
    return Refused(code, {"error": {"code": code, "message": message, "status": status}}, f"{status}: {message}")


@dataclass(frozen=True)
class Issued:
    principal: str
    scope: str
    expiry: float
    kind: str  # federated, service_account


@dataclass
class TokenServer:
    providers: dict  # resource name -> {"issuer", "allowed_audiences", optional "jwks_uri"}
    service_accounts: dict  # email -> {"bindings": [...], "public_keys": {kid: PEM}}
    token_lifetime: int = 3600
    log_path: str | None = None
    tokens: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _jwks: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: dict, log_path: str | None = None) -> "TokenServer":
        providers = {p["name"]: p for p in config.get("providers", [])}
        accounts = {a["email"]: a for a in config.get("service_accounts", [])}
        return cls(providers, accounts, int(config.get("token_lifetime", 3600)), log_path)

    # -- issued tokens ----------------------------------------------------------------------------

    def issue(self, principal: str, scope: str, kind: str, lifetime: int | None = None) -> tuple[str, float]:
        token = f"ya29.local-{secrets.token_urlsafe(32)}"
        expiry = time.time() + (lifetime or self.token_lifetime)
        with self._lock:
            now = time.time()
            for stale in [t for t, issued in self.tokens.items() if issued.expiry < now]:
                del self.tokens[stale]
            self.tokens[token] = Issued(principal, scope, expiry, kind)
        return token, expiry

    def lookup(self, token: str) -> Issued | None:
        with self._lock:
            issued = self.tokens.get(token)
        return issued if issued is not None and issued.expiry > time.time() else None

    # -- STS --------------------------------------------------------------------------------------

    def exchange(self, form: dict) -> tuple[dict, dict, str]:
        if form.get("grant_type") != TOKEN_EXCHANGE:
            raise oauth_error("unsupported_grant_type", f"Unsupported grant type {form.get('grant_type')!r}.")
        if form.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
            raise oauth_error("invalid_request", "The requested token type is not supported.")
        if form.get("subject_token_type") not in ID_TOKEN_TYPES:
            raise oauth_error("invalid_request", 'Invalid value for "subject_token_type".')
        audience = form.get("audience", "")
        provider = self.providers.get(audience)
        if provider is None:
            raise oauth_error(
                "invalid_target",
                'The target service indicated by the "audience" parameters is invalid. This might either be '
                "because the pool or provider is disabled or deleted or because it doesn't exist.",
            )
        claims = self.verify_subject_token(provider, form.get("subject_token", ""))
        pool = audience[len(IAM_HOST) :].split("/providers/")[0]
        principal = f"principal://iam.googleapis.com/{pool}/subject/{claims['sub']}"
        token, expiry = self.issue(principal, form.get("scope", ""), "federated")
        return (
            {
                "access_token": token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": int(expiry - time.time()),
            },
            claims,
            principal,
        )

    def verify_subject_token(self, provider: dict, token: str) -> dict:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise oauth_error("invalid_grant", "Unable to parse the ID Token.") from None
        issuer = provider["issuer"]
        if claims.get("iss") != issuer:
            raise oauth_error(
                "invalid_grant",
                f"The issuer in ID Token {claims.get('iss')} does not match the expected ISSUER {issuer}.",
            )
        try:
            key = self.jwks_client(provider).get_signing_key(header.get("kid"))
            jwt.decode(
                token, key.key, algorithms=SIGNING_ALGORITHMS, options={"verify_aud": False, "verify_exp": False}
            )
        except (jwt.PyJWTError, requests.RequestException, KeyError, ValueError) as e:
            raise oauth_error("invalid_grant", f"Invalid ID Token signature ({type(e).__name__}).") from e
        allowed = set(provider.get("allowed_audiences") or [provider["name"], "https:" + provider["name"]])
        audiences = claims.get("aud", [])
        audiences = [audiences] if isinstance(audiences, str) else audiences
        if not set(audiences) & allowed:
            raise oauth_error(
                "invalid_grant", f"The audience in ID Token {audiences} does not match the expected audience."
            )
        now = time.time()
        if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] + LEEWAY < now:
            raise oauth_error(
                "invalid_grant", f"ID Token expired at {claims.get('exp')}; the current time is {int(now)}."
            )
        if not claims.get("sub"):
            raise oauth_error("invalid_grant", "The ID Token has no subject.")
        return claims

    def jwks_client(self, provider: dict) -> jwt.PyJWKClient:
        issuer = provider["issuer"]
        if issuer not in self._jwks:
            jwks_uri = provider.get("jwks_uri")
            if not jwks_uri:
                discovery = requests.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration", timeout=10)
                discovery.raise_for_status()
                jwks_uri = discovery.json()["jwks_uri"]
            self._jwks[issuer] = jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=60)
        return self._jwks[issuer]

    # -- IAM Credentials --------------------------------------------------------------------------

    def generate_access_token(self, email: str, authorization: str, body: dict) -> tuple[dict, str]:
        bearer = authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else ""
        caller = self.lookup(bearer)
        if caller is None:
            raise api_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. "
                "Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            )
        account = self.service_accounts.get(email)
        if account is None or not _bound(caller.principal, account.get("bindings", [])):
            raise api_error(
                403,
                "PERMISSION_DENIED",
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
            )
        lifetime = int(str(body.get("lifetime", "3600s")).rstrip("s") or 3600)
        if not 0 < lifetime <= 43200:
            raise api_error(400, "INVALID_ARGUMENT", "The lifetime must be between 1 second and 12 hours.")
        scope = " ".join(body.get("scope") or [])
        token, expiry = self.issue(f"serviceAccount:{email}", scope, "service_account", lifetime)
        expire_time = datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"accessToken": token, "expireTime": expire_time}, caller.principal

    # -- OAuth 2.0 JWT-bearer grant ---------------------------------------------------------------

    def jwt_bearer(self, form: dict, token_url: str) -> tuple[dict, dict]:
        if form.get("grant_type") != JWT_BEARER:
            raise oauth_error("unsupported_grant_type", f"Unsupported grant type {form.get('grant_type')!r}.")
        assertion = form.get("assertion", "")
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
            kid = jwt.get_unverified_header(assertion).get("kid")
        except jwt.PyJWTError:
            raise oauth_error("invalid_grant", "Invalid JWT: the assertion is not a JWT.") from None
        account = self.service_accounts.get(claims.get("iss", ""))
        if account is None:
            raise oauth_error("invalid_grant", "Invalid grant: account not found")
        key = account.get("public_keys", {}).get(kid)
        if key is None:
            raise oauth_error("invalid_grant", "Invalid JWT Signature.")
        try:
            # google-auth always writes Google's own token URL as the audience, whatever URL it posts to.
            jwt.decode(assertion, key, algorithms=["RS256"], audience=[GOOGLE_TOKEN_URL, token_url], leeway=LEEWAY)
        except jwt.ExpiredSignatureError:
            raise oauth_error(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
            ) from None
        except jwt.InvalidAudienceError:
            raise oauth_error("invalid_grant", f"Invalid JWT: the audience must be {token_url}.") from None
        except jwt.PyJWTError:
            raise oauth_error("invalid_grant", "Invalid JWT Signature.") from None
        token, expiry = self.issue(f"serviceAccount:{claims['iss']}", claims.get("scope", ""), "service_account")
        return {"access_token": token, "token_type": "Bearer", "expires_in": int(expiry - time.time())}, claims

    # -- log --------------------------------------------------------------------------------------

    def record(self, entry: dict) -> None:
        if self.log_path:
            with self._lock, open(self.log_path, "a") as fh:
                fh.write(json.dumps({"time": time.time(), **entry}) + "\n")


def _bound(principal: str, bindings: list) -> bool:
    for binding in bindings:
        if binding == principal:
            return True
        if binding.startswith("principalSet://") and binding.endswith("/*"):
            pool = binding[len("principalSet://") : -2]
            if principal.startswith(f"principal://{pool}/subject/"):
                return True
    return False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _public_claims(claims: dict) -> dict:
    return {name: claims.get(name) for name in ("iss", "aud", "sub", "iat", "exp")}


class Handler(BaseHTTPRequestHandler):
    server_version = "google-sts-local/1"
    protocol_version = "HTTP/1.1"
    tokens: TokenServer  # set on the class by serve()

    def log_message(self, format, *args):  # one line per request, without query strings
        sys.stderr.write(
            f"{self.address_string()} {self.command} {urlparse(self.path).path} {args[1] if len(args) > 1 else ''}\n"
        )

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _form(self) -> dict:
        return {k: v[0] for k, v in parse_qs(self._body().decode("utf-8", "replace")).items()}

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/healthz":
            return self._send(200, {"status": "ok"})
        if url.path == "/v1/tokeninfo":
            token = (parse_qs(url.query).get("access_token") or [""])[0]
            issued = self.tokens.lookup(token)
            if issued is None:
                return self._send(400, {"error": "invalid_token", "error_description": "Invalid Value"})
            return self._send(
                200,
                {
                    "sub": issued.principal,
                    "scope": issued.scope,
                    "exp": int(issued.expiry),
                    "expires_in": int(issued.expiry - time.time()),
                    "kind": issued.kind,
                },
            )
        self._send(404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}})

    def do_POST(self):
        path = urlparse(self.path).path
        entry: dict = {"endpoint": path}
        try:
            if path == "/v1/token":
                form = self._form()
                entry.update(
                    audience=form.get("audience"),
                    scope=form.get("scope"),
                    subject_token_sha256=_digest(form.get("subject_token", "")),
                )
                try:
                    answer, claims, principal = self.tokens.exchange(form)
                except Refused:
                    _add_claims(entry, form.get("subject_token", ""))
                    raise
                entry.update(_public_claims(claims), principal=principal)
            elif GENERATE_ACCESS_TOKEN.match(path):
                email = unquote(GENERATE_ACCESS_TOKEN.match(path).group(1))
                entry["service_account"] = email
                try:
                    body = json.loads(self._body() or b"{}")
                except ValueError:
                    raise api_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.") from None
                answer, principal = self.tokens.generate_access_token(
                    email, self.headers.get("Authorization", ""), body
                )
                entry["principal"] = principal
            elif path == "/token":
                form = self._form()
                entry["assertion_sha256"] = _digest(form.get("assertion", ""))
                host = self.headers.get("Host", f"{self.server.server_address[0]}:{self.server.server_address[1]}")
                answer, claims = self.tokens.jwt_bearer(form, f"http://{host}/token")
                entry.update(service_account=claims.get("iss"), scope=claims.get("scope"))
            else:
                return self._send(404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}})
        except Refused as e:
            self.tokens.record({**entry, "outcome": e.outcome})
            return self._send(e.status, e.body)
        self.tokens.record({**entry, "outcome": "ok"})
        self._send(200, answer)


def _add_claims(entry: dict, token: str) -> None:
    try:
        entry.update(_public_claims(jwt.decode(token, options={"verify_signature": False})))
    except jwt.PyJWTError:
        pass


def serve(tokens: TokenServer, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server (not yet serving: call ``serve_forever``) answering with ``tokens``."""
    handler = type("BoundHandler", (Handler,), {"tokens": tokens})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


# -- for the harness ----------------------------------------------------------------------------


def start(port: int, config: dict, directory: str, **start_kwargs):
    """This server as a subprocess on http://127.0.0.1:``port`` (``localgalaxy.start``), ready;
    its config, output and exchange log (``google_sts_exchanges.jsonl``, written from the first
    exchange on) in ``directory``. Returns (process, url, exchange log path)."""
    import os

    import requests

    from galaxy_cloud_storage_testing import localgalaxy
    from galaxy_cloud_storage_testing.storage_servers import wait_until

    config_path = os.path.join(directory, "google_sts.json")
    with open(config_path, "w") as fh:
        json.dump(config, fh)
    log_path = os.path.join(directory, "google_sts_exchanges.jsonl")
    command = [sys.executable, "-m", __spec__.name, "--port", str(port), "--config", config_path, "--log", log_path]
    process = localgalaxy.start(command, os.path.join(directory, "google_sts.log"), directory, **start_kwargs)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/healthz", timeout=2).ok, process, "google_sts_server", 30)
    except BaseException:
        localgalaxy.stop(process)
        raise
    return process, url, log_path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--config", required=True, help="JSON file: providers, service_accounts, token_lifetime")
    parser.add_argument("--log", help="append a JSON line per exchange (never a token) to this file")
    args = parser.parse_args(argv)
    with open(args.config) as fh:
        tokens = TokenServer.from_config(json.load(fh), args.log)
    server = serve(tokens, args.host, args.port)
    serve_until_interrupted(server, f"google_sts_server listening on http://{args.host}:{server.server_address[1]}")


if __name__ == "__main__":
    main()

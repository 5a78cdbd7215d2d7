"""What Apache's mod_auth_openidc does in front of Keystone's federation endpoint, as WSGI middleware.

mod_auth_openidc (``AuthType oauth20`` on ``/v3/OS-FEDERATION/identity_providers/<idp>/protocols/openid/auth``)
checks the ``Authorization: Bearer`` access token (a JWT verified against the provider's JWKS, or
RFC 7662 introspection), then hands the claims to the app: ``REMOTE_USER`` (``OIDCRemoteUserClaim``,
``sub`` by default) and one variable per claim with ``OIDCClaimPrefix`` (``OIDC-``), array values
joined with ``OIDCClaimDelimiter``: ``;`` here, as Keystone's mapping engine splits multi-valued
assertion values on ``;`` (keystone/federation/utils.py); mod_auth_openidc's default ``,`` would
make ``["a", "b"]`` one value ``"a,b"``. Passed as headers as well, the issuer becomes
``HTTP_OIDC_ISS``, which is what keystone's ``[openid] remote_id_attribute`` names. Incoming
``OIDC-*`` headers are dropped first so a client cannot forge claims.

``validator`` is any callable ``token -> claims dict`` that raises on an invalid token:
``JwksValidator`` (RS256 JWT against a JWKS file or URL) or ``IntrospectionValidator`` (RFC 7662,
for opaque tokens, as mod_auth_openidc's ``OIDCOAuthIntrospectionEndpoint``). With ``record``,
each validation appends a JSON line (time, outcome, iss, sub, client_id, the token's SHA-256,
never the token) for the tests to count.
"""

import hashlib
import json
import re
import threading
import time

FEDERATION_AUTH = re.compile(r"^/v3/OS-FEDERATION/identity_providers/[^/]+/protocols/[^/]+/auth/?$")
CLAIM_PREFIX = "OIDC-"


class InvalidToken(Exception):
    pass


class JwksValidator:
    """RS256/ES256 JWTs signed by a key of the JWKS (a file path or an https URL), with iss and aud."""

    def __init__(self, jwks, issuer, audience, leeway=30):
        import jwt

        self.issuer, self.audience, self.leeway = issuer, audience, leeway
        if jwks.startswith(("http://", "https://")):
            self._client = jwt.PyJWKClient(jwks)
            self._keys = None
        else:
            with open(jwks) as fh:
                self._keys = jwt.PyJWKSet.from_dict(json.load(fh))
            self._client = None

    def _key(self, token):
        import jwt

        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._keys.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise InvalidToken(f"no key {kid!r} in the JWKS")

    def __call__(self, token):
        import jwt

        try:
            return jwt.decode(
                token, self._key(token), algorithms=["RS256", "ES256"], audience=self.audience,
                issuer=self.issuer, leeway=self.leeway, options={"require": ["exp", "iss", "sub"]},
            )  # fmt: skip
        except jwt.PyJWTError as e:
            raise InvalidToken(str(e)) from e


class IntrospectionValidator:
    """Opaque access tokens, asked about at the provider's introspection endpoint with the resource
    server's own client credentials; active, from ``issuer``, or refused."""

    def __init__(self, url, client_id, client_secret, issuer):
        self.url, self.auth, self.issuer = url, (client_id, client_secret), issuer

    def __call__(self, token):
        import requests

        response = requests.post(
            self.url, data={"token": token, "token_type_hint": "access_token"}, auth=self.auth, timeout=10
        )
        response.raise_for_status()
        claims = response.json()
        if not claims.get("active"):
            raise InvalidToken("the token is not active")
        if claims.get("iss", self.issuer) != self.issuer:
            raise InvalidToken(f"the token is from {claims.get('iss')}, not {self.issuer}")
        claims.setdefault("iss", self.issuer)
        return claims


class OidcBearerMiddleware:
    def __init__(self, app, validator, remote_user_claim="sub", delimiter=";", record=None):
        self.app, self.validator, self.remote_user_claim, self.delimiter = app, validator, remote_user_claim, delimiter
        self.record, self.record_lock = record, threading.Lock()

    def _record(self, token, claims, outcome):
        if not self.record:
            return
        line = {
            "time": time.time(), "outcome": outcome, "iss": claims.get("iss"), "sub": claims.get("sub"),
            "client_id": claims.get("client_id") or claims.get("azp"),
            "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
        }  # fmt: skip
        with self.record_lock, open(self.record, "a") as fh:
            fh.write(json.dumps(line) + "\n")

    def __call__(self, environ, start_response):
        # A client may not set what only the middleware may: drop forged claim variables/headers.
        for key in [k for k in environ if k.startswith(("HTTP_OIDC", CLAIM_PREFIX, "OIDC_")) or k == "REMOTE_USER"]:
            del environ[key]
        if not FEDERATION_AUTH.match(environ.get("PATH_INFO", "")):
            return self.app(environ, start_response)
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        if not authorization.lower().startswith("bearer "):
            return self._refuse(start_response, "invalid_request", "no bearer token")
        token = authorization[7:].strip()
        try:
            claims = self.validator(token)
        except Exception as e:  # any validator failure is the client's 401, as with mod_auth_openidc
            self._record(token, {}, "refused")
            return self._refuse(start_response, "invalid_token", str(e))
        self._record(token, claims, "ok")
        for name, value in claims.items():
            if isinstance(value, (list, tuple)):
                value = self.delimiter.join(str(v) for v in value)
            elif isinstance(value, dict):
                value = json.dumps(value)
            value = str(value)
            environ[CLAIM_PREFIX + name] = value
            environ["HTTP_" + (CLAIM_PREFIX + name).upper().replace("-", "_")] = value
        environ["REMOTE_USER"] = str(claims[self.remote_user_claim])
        return self.app(environ, start_response)

    @staticmethod
    def _refuse(start_response, error, description):
        body = json.dumps({"error": {"code": 401, "title": "Unauthorized", "message": description}}).encode()
        description = description.replace('"', "'")
        start_response("401 Unauthorized", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("WWW-Authenticate", f'Bearer error="{error}", error_description="{description}"'),
        ])  # fmt: skip
        return [body]

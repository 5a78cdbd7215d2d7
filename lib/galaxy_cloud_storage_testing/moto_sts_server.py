"""moto's server, with AWS's behaviour for STS AssumeRoleWithWebIdentity. Same arguments as
``moto_server``.

1. Unsigned, under IAM enforcement (``INITIAL_NO_AUTH_ACTION_COUNT``). AWS serves
   AssumeRoleWithWebIdentity without a signature: the web identity token is the credential. moto
   5.2 checks a signature on every call once enforcement is on, and an unsigned call then crashes
   it with a 500. This lets exactly that one action through unsigned, as AWS does.

2. The token is checked, as AWS does. moto accepts any string; here the token must be a JWT whose
   issuer is an IAM OpenID Connect provider of the account (``create_open_id_connect_provider``),
   whose audience is one of that provider's client ids, signed with a key from the issuer's JWKS
   (fetched through its discovery document), not expired; the role must trust that provider
   (``Principal.Federated``) for ``sts:AssumeRoleWithWebIdentity``; and DurationSeconds must not
   exceed the role's MaxSessionDuration. Otherwise the answer is AWS's error
   (InvalidIdentityToken, ExpiredTokenException, AccessDenied, ValidationError).

3. With ``MOTO_STS_WEB_IDENTITY_LOG`` set to a path, every AssumeRoleWithWebIdentity appends one
   JSON line there: the time, the role, RoleSessionName, DurationSeconds, the token's public claims (iss,
   aud, sub, iat, exp), the token's SHA-256 (not the token) and the outcome. Tests read it.
"""

import hashlib
import json
import os
import sys
import threading
import time
from urllib.parse import urlparse

import jwt
import requests
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.models import iam_backends
from moto.server import main
from moto.sts.exceptions import STSClientError
from moto.sts.responses import TokenResponse
from moto.utilities.utils import get_partition

UNSIGNED_ACTIONS = {"AssumeRoleWithWebIdentity"}
RECORD_PATH = os.environ.get("MOTO_STS_WEB_IDENTITY_LOG")
DEFAULT_MAX_SESSION = 3600
_checked = ActionAuthenticatorMixin._authenticate_and_authorize_action
_assume_role_with_web_identity = TokenResponse.assume_role_with_web_identity
_jwks_clients: dict = {}
_record_lock = threading.Lock()


def _authenticate_and_authorize_action(self, iam_request_cls, resource="*"):
    if "Authorization" not in self.headers and self._get_action() in UNSIGNED_ACTIONS:
        return
    return _checked(self, iam_request_cls, resource)


class WebIdentityRefused(STSClientError):
    pass


def _jwks_client(issuer: str) -> jwt.PyJWKClient:
    if issuer not in _jwks_clients:
        discovery = requests.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration", timeout=10)
        discovery.raise_for_status()
        _jwks_clients[issuer] = jwt.PyJWKClient(discovery.json()["jwks_uri"], cache_keys=True, lifespan=60)
    return _jwks_clients[issuer]


def _trusts(role, provider_arn: str) -> bool:
    document = role.assume_role_policy_document
    policy = json.loads(document) if isinstance(document, str) else document
    for statement in policy.get("Statement", []):
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        federated = (statement.get("Principal") or {}).get("Federated", [])
        federated = [federated] if isinstance(federated, str) else federated
        if (
            statement.get("Effect") == "Allow"
            and provider_arn in federated
            and "sts:AssumeRoleWithWebIdentity" in actions
        ):
            return True
    return False


def check_web_identity(account_id: str, partition: str, role_arn: str, token: str, duration: int) -> dict:
    """The token's claims if AWS would accept this call; raises AWS's error otherwise."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise WebIdentityRefused(
            "InvalidIdentityToken",
            "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)",
        ) from None
    issuer = claims.get("iss", "")
    iam = iam_backends[account_id][partition]
    parsed = urlparse(issuer)
    provider_arn = f"arn:{partition}:iam::{account_id}:oidc-provider/{parsed.netloc}{parsed.path}"
    provider = iam.open_id_providers.get(provider_arn)
    if provider is None:
        raise WebIdentityRefused(
            "InvalidIdentityToken", f"No OpenIDConnect provider found in your account for {issuer}"
        )
    audiences = claims.get("aud", [])
    audiences = [audiences] if isinstance(audiences, str) else audiences
    if not set(audiences) & set(provider.client_id_list):
        raise WebIdentityRefused("InvalidIdentityToken", "Incorrect token audience")
    try:
        key = _jwks_client(issuer).get_signing_key_from_jwt(token)
        jwt.decode(
            token,
            key.key,
            algorithms=["RS256", "ES256"],
            audience=audiences,
            issuer=issuer,
            options={"verify_exp": False},
        )
    except (jwt.PyJWTError, requests.RequestException, KeyError) as e:
        raise WebIdentityRefused(
            "InvalidIdentityToken", f"Couldn't verify the token's signature with {issuer}'s keys ({type(e).__name__})"
        ) from e
    now = int(time.time())
    if int(claims.get("exp", 0)) <= now:
        raise WebIdentityRefused(
            "ExpiredTokenException",
            f"Token expired: current date/time {now} must be before the expiration date/time {claims.get('exp')}",
        )
    try:
        role = iam.get_role_by_arn(role_arn)
    except Exception:
        raise WebIdentityRefused("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity") from None
    if not _trusts(role, provider_arn):
        raise WebIdentityRefused("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
    maximum = int(role.max_session_duration or DEFAULT_MAX_SESSION)
    if duration > maximum:
        raise WebIdentityRefused(
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        )
    return claims


def _record(entry: dict) -> None:
    if RECORD_PATH:
        with _record_lock, open(RECORD_PATH, "a") as fh:
            fh.write(json.dumps(entry) + "\n")


def assume_role_with_web_identity(self):
    token = self._get_param("WebIdentityToken") or ""
    role_arn = self._get_param("RoleArn")
    duration = self._get_int_param("DurationSeconds", 3600)
    entry = {
        "time": time.time(),
        "role_arn": role_arn,
        "role_session_name": self._get_param("RoleSessionName"),
        "duration_seconds": duration,
        "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
    }
    try:
        claims = check_web_identity(self.current_account, get_partition(self.region), role_arn, token, duration)
    except WebIdentityRefused as e:
        _record({**entry, "outcome": f"{e.code}: {e.message}"})
        raise
    entry.update({name: claims.get(name) for name in ("iss", "aud", "sub", "iat", "exp")})
    result = _assume_role_with_web_identity(self)
    _record({**entry, "outcome": "ok", "access_key_id": result.result["Credentials"].access_key_id})
    return result


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_and_authorize_action
TokenResponse.assume_role_with_web_identity = assume_role_with_web_identity

if __name__ == "__main__":
    main(sys.argv[1:])

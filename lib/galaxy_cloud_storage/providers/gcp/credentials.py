"""Google Cloud: the user's authorization record -> a short-lived OAuth 2.0 access token.

Two modes (GcpAuthzConfig, in this package):

- ``workload_identity``: workload identity federation. The user's OIDC id_token is the subject
  token of an RFC 8693 exchange at Google's STS (``settings.token_url``) for the pool provider
  named by ``config.audience``; with ``config.service_account`` the federated token is then
  exchanged at IAM Credentials (``settings.iam_credentials_endpoint``) for that service account's
  token. google-auth's external-account credentials do both; the id_token comes from a supplier
  object, never from a file or URL the user chose.
- ``service_account_key``: a key from Galaxy's vault, exchanged by the JWT-bearer grant at the
  admin's ``settings.oauth2_token_url``: the key file's own ``token_uri`` is written by the user and
  is ignored (invariant 4, docs/design.rst), as is its ``universe_domain`` (which would switch google-auth to
  self-signed tokens).

Every endpoint is the admin's; google-auth's default-credential lookup (environment, gcloud files,
the GCE metadata server) is never called (invariant 3). Tokens are never logged.
"""

import json
import logging
from collections.abc import Callable
from datetime import UTC
from typing import Optional

import requests
from galaxy import exceptions
from google.auth import exceptions as auth_exceptions
from google.auth import identity_pool
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from ...authz.errors import ReauthenticationRequired
from ..cloud import OidcLogin, quiet_sdk_debug_logging
from . import GcpAuthzConfig, GcpSettings
from .storage import GcpCredentials

log = logging.getLogger(__name__)

STORAGE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
HTTP_TIMEOUT = 30
RELOGIN = "Log in to Galaxy again, then retry."


class _IdTokenSupplier(identity_pool.SubjectTokenSupplier):
    """Hands google-auth the user's id_token, fetched (and refreshed by Galaxy) only when needed."""

    def __init__(self, id_token: Callable[[], str]):
        self._id_token = id_token

    def get_subject_token(self, context, request) -> str:
        return self._id_token()


def mint(settings: GcpSettings, config: GcpAuthzConfig, login: Optional[OidcLogin]) -> GcpCredentials:
    """Cloud.mint: the user's id_token is asked for only where the record's mode exchanges it."""
    return gcp_credentials(settings, config, lambda: login.id_token())


def gcp_credentials(settings: GcpSettings, config: GcpAuthzConfig, id_token: Callable[[], str]) -> GcpCredentials:
    """Exchange the record's credential for a short-lived access token to Cloud Storage.

    Raises ReauthenticationRequired (401) when Google refuses the user's login token,
    ItemAccessibilityException (403) when the identity may not get a token (with what to check),
    UpstreamProxyError (502) when the token endpoints cannot be reached."""
    quiet_sdk_debug_logging()
    if config.mode == "service_account_key":
        credentials = _service_account_key_credentials(settings, config.service_account_key or "")
    else:
        credentials = _federated_credentials(settings, config, id_token)
    session = requests.Session()
    session.verify = settings.verify
    try:
        credentials.refresh(Request(session=session))
    except ReauthenticationRequired:
        raise
    except auth_exceptions.TransportError as e:
        log.warning("Google token endpoint unreachable: %s", type(e).__name__)
        raise exceptions.UpstreamProxyError(
            "Google's token service could not be reached; try again later, or ask the admin to check its address."
        ) from e
    except (auth_exceptions.RefreshError, auth_exceptions.OAuthError) as e:  # STS raises the latter
        raise _refusal(e, config) from e
    finally:
        session.close()
    if not credentials.token:
        raise exceptions.UpstreamProxyError("Google's token service answered without an access token; try again later.")
    expiry = credentials.expiry  # google-auth keeps naive UTC datetimes
    if expiry is not None and expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    return GcpCredentials(access_token=credentials.token, expiry=expiry)


def _federated_credentials(
    settings: GcpSettings, config: GcpAuthzConfig, id_token: Callable[[], str]
) -> identity_pool.Credentials:
    impersonation_url = None
    if config.service_account:
        base = str(settings.iam_credentials_endpoint).rstrip("/")
        impersonation_url = f"{base}/v1/projects/-/serviceAccounts/{config.service_account}:generateAccessToken"
    return identity_pool.Credentials(
        audience=config.audience,
        subject_token_type=JWT_TOKEN_TYPE,
        token_url=str(settings.token_url),
        subject_token_supplier=_IdTokenSupplier(id_token),
        service_account_impersonation_url=impersonation_url,
        scopes=[STORAGE_SCOPE],
    )


def _service_account_key_credentials(settings: GcpSettings, key_json: str) -> service_account.Credentials:
    try:
        info = json.loads(key_json)
        info.pop("universe_domain", None)
        # The key's token_uri is only used if no other is given; it is replaced below.
        info["token_uri"] = str(settings.oauth2_token_url)
        credentials = service_account.Credentials.from_service_account_info(info, scopes=[STORAGE_SCOPE])
    except (ValueError, KeyError, TypeError):  # never echo the key's content
        raise exceptions.RequestParameterInvalidException(
            "The stored service account key is not a usable key file; update the authorization with a new key."
        ) from None
    return credentials.with_token_uri(str(settings.oauth2_token_url))


def _refusal(error: auth_exceptions.GoogleAuthError, config: GcpAuthzConfig) -> Exception:
    """The exception a refused exchange becomes: what went wrong and what to check."""
    code, description = _error_details(error)
    log.info("Google refused a token exchange (%s mode): %s %s", config.mode, code, description)
    said = f" ({description})" if description else ""
    if config.mode == "service_account_key":
        if code in ("invalid_grant", "invalid_client", "unauthorized_client"):
            return exceptions.ItemAccessibilityException(
                f"Google refused the stored service account key{said}. The key may have been deleted or "
                "disabled: create a new key and update the authorization."
            )
        return exceptions.UpstreamProxyError(f"Google's token service failed{said}; try again later.")
    if code == "impersonation":
        return exceptions.ItemAccessibilityException(
            f"Google refused to let your login act as {config.service_account}{said}. Check that the "
            "service account grants roles/iam.workloadIdentityUser to your identity in the pool "
            f"(principal://.../subject/... or principalSet://...) of {config.audience}."
        )
    lowered = description.lower()
    if code == "invalid_grant" and ("audience" in lowered or "issuer" in lowered):
        return exceptions.ItemAccessibilityException(
            f"Google's workload identity provider {config.audience} does not accept this Galaxy's login "
            f"tokens{said}. Check the provider's issuer URI and allowed audiences (this Galaxy's OIDC client id)."
        )
    if code == "invalid_grant":  # expired, badly signed or malformed: a new login gives a new one
        return ReauthenticationRequired(f"Google did not accept your login token{said}. {RELOGIN}")
    if code == "unauthorized_client":
        return exceptions.ItemAccessibilityException(
            f"Google's workload identity provider {config.audience} rejected your identity{said}. Check the "
            "provider's attribute condition and attribute mapping."
        )
    if code in ("invalid_target", "invalid_request", "invalid_scope"):
        return exceptions.ItemAccessibilityException(
            f"Google refused the token exchange for {config.audience}{said}. Check the audience (the "
            "workload identity pool provider's full resource name) and that the provider is enabled."
        )
    return exceptions.UpstreamProxyError(f"Google's token service failed{said}; try again later.")


def _error_details(error: auth_exceptions.GoogleAuthError) -> tuple[str, str]:
    """(OAuth error code, description) of a refusal. google-auth passes the response body as the
    second argument (text from STS and IAM, parsed JSON from the OAuth 2.0 token endpoint).
    Impersonation errors come from IAM in Google's JSON API format; their code is ``impersonation``."""
    parsed = None
    for arg in error.args[1:]:
        if isinstance(arg, dict):
            parsed = arg
        elif isinstance(arg, (str, bytes)):
            try:
                parsed = json.loads(arg)
            except ValueError:
                pass
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):  # IAM Credentials
        return "impersonation", str(parsed["error"].get("message", ""))[:300]
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):  # OAuth 2.0 / STS
        return parsed["error"], str(parsed.get("error_description", ""))[:300]
    first = str(error.args[0]) if error.args else ""
    if "impersonat" in first.lower():
        return "impersonation", ""
    return "", ""

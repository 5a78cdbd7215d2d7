"""Azure: the user's authorization record -> a short-lived storage credential, at the admin's authority.

- federated (the default): the user's OIDC id_token is the client assertion of an Entra app with a
  federated identity credential for this Galaxy's issuer (workload identity federation); Entra
  answers with an access token for Azure Storage.
- client_secret (admin-enabled): the app's secret, from the vault, exchanged the same way.
- sas: the user's SAS token, passed through.

The job gets only the access token (or the SAS), never the id_token nor the client secret.
azure-identity is used with the authority and CA bundle of the admin's settings only (invariant 4, docs/design.rst),
never with its environment-reading credentials (invariant 3).
"""

import logging
import re
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import requests
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from azure.identity import ClientAssertionCredential, ClientSecretCredential
from galaxy import exceptions

from ...authz.errors import ReauthenticationRequired
from ..cloud import OidcLogin, quiet_sdk_debug_logging
from . import AzureAuthzConfig, AzureSettings
from .storage import AzureCredentials, STORAGE_SCOPE

log = logging.getLogger(__name__)

# Entra's answers that mean "this login token will not do": log in again for a fresh one.
ASSERTION_REJECTED = {
    50027: "the login token is malformed",
    700024: "the login token has expired",
    700027: "the login token's signature could not be verified",
}
_AADSTS = re.compile(r"AADSTS(\d+)")


def mint(settings: AzureSettings, config: AzureAuthzConfig, login: Optional[OidcLogin]) -> AzureCredentials:
    """Cloud.mint: the user's id_token is asked for only where the record's mode exchanges it."""
    return azure_credentials(settings, config, lambda: login.id_token())


def azure_credentials(
    settings: AzureSettings, config: AzureAuthzConfig, id_token: Callable[[], str]
) -> AzureCredentials:
    """Exchange the record's credential for an Azure Storage access token (or pass its SAS).
    ``id_token`` is called only in federated mode, and only when the exchange happens."""
    quiet_sdk_debug_logging()
    if config.mode == "sas":
        return AzureCredentials(sas_token=config.sas_token)
    if config.mode == "client_secret":
        credential: Any = ClientSecretCredential(
            config.tenant_id, config.client_id, config.client_secret, **_identity_options(settings)
        )
        # MsalCredential reads AZURE_REGIONAL_AUTHORITY_NAME, which would send the secret to a
        # regional Microsoft host instead of the admin's authority (invariants 3 and 4).
        if hasattr(credential, "_regional_authority"):
            credential._regional_authority = None
    else:
        # azure-identity posts the assertion itself to {authority}/{tenant}/oauth2/v2.0/token.
        credential = ClientAssertionCredential(
            config.tenant_id, config.client_id, id_token, **_identity_options(settings)
        )
    try:
        with credential:
            token = credential.get_token(STORAGE_SCOPE)
    except ClientAuthenticationError as e:
        raise _refusal(e, config, _host(settings)) from None
    except (ServiceRequestError, ServiceResponseError) as e:
        log.warning("Entra authority %s unreachable: %s", settings.authority_host, type(e).__name__)
        raise exceptions.UpstreamProxyError(
            f"The Microsoft Entra authority {_host(settings)} could not be reached; try again later."
        ) from None
    except ValueError as e:  # MSAL's tenant discovery failed (unknown tenant, or not an authority)
        raise exceptions.ItemAccessibilityException(
            f"Microsoft Entra at {_host(settings)} did not accept tenant {config.tenant_id}: check tenant_id "
            f"({type(e).__name__})."
        ) from None
    return AzureCredentials(access_token=token.token, expires_on=datetime.fromtimestamp(token.expires_on, timezone.utc))


def _identity_options(settings: AzureSettings) -> dict:
    return {
        "authority": _host(settings),
        "connection_verify": settings.verify,
        # Instance discovery asks login.microsoftonline.com whether the authority is known: the
        # admin's authority is trusted as it is (invariant 4), and nothing else is contacted.
        "disable_instance_discovery": True,
        # No tenant other than the record's, whatever a token request or the environment says.
        "additionally_allowed_tenants": [],
        "retry_total": 2,
        "retry_backoff_factor": 0.5,
        "connection_timeout": 10,
    }


def _unanswered(error: BaseException) -> bool:
    """Whether ``error`` (or what it wraps) is a failure to get any answer from the authority."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (ServiceRequestError, ServiceResponseError, requests.ConnectionError, requests.Timeout)):
            return True
        error = error.__cause__ or error.__context__
    return False


def _host(settings: AzureSettings) -> str:
    return str(settings.authority_host).rstrip("/")


def _refusal(error: ClientAuthenticationError, config: AzureAuthzConfig, authority: str) -> Exception:
    """The galaxy exception for Entra's refusal, naming its AADSTS code (never a token)."""
    text = error.message or str(error)
    match = _AADSTS.search(text)
    code = int(match.group(1)) if match else None
    status = getattr(error, "status_code", None) or (error.response.status_code if error.response is not None else None)
    if code is None and status is not None and status >= 500:
        return exceptions.UpstreamProxyError(f"Microsoft Entra at {authority} failed (HTTP {status}); try again later.")
    if code is None and _unanswered(error):
        # MSAL (client_secret mode) reports a connection failure as an authentication error.
        return exceptions.UpstreamProxyError(
            f"The Microsoft Entra authority {authority} could not be reached; try again later."
        )
    cause = f"AADSTS{code}" if code else "no error code"
    if config.mode == "federated" and code in ASSERTION_REJECTED:
        return ReauthenticationRequired(
            f"Microsoft Entra refused your login token ({cause}: {ASSERTION_REJECTED[code]}). "
            "Log in to Galaxy again, then retry."
        )
    if config.mode == "client_secret":
        hint = (
            f"check the client secret of app {config.client_id} in tenant {config.tenant_id} (it may have expired), "
            "and that the app exists"
        )
    elif code in (70021, 700211, 700212, 700213):
        hint = (
            f"app {config.client_id} in tenant {config.tenant_id} has no federated identity credential matching "
            "your Galaxy login: the admin or the app's owner should check its issuer (this Galaxy's OpenID "
            "provider), subject (your login's subject) and audience"
        )
    else:
        hint = (
            f"check tenant_id {config.tenant_id} and client_id {config.client_id}, and the app's federated credential"
        )
    return exceptions.ItemAccessibilityException(f"Microsoft Entra refused to issue a storage token ({cause}): {hint}.")

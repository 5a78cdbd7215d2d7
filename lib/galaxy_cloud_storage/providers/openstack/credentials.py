"""OpenStack: a Swift token and storage URL from the admin's Keystone v3 or Swift v1 auth endpoint.

Keystone v3 (keystoneauth1, plugins built from the record and the admin's settings only; neither
reads OS_* variables or clouds.yaml, unlike openstacksdk and swiftclient's SwiftService):
- ``oidc_federation``: the user's OIDC access token to Keystone's federated auth endpoint for the
  record's identity provider and protocol (v3.OidcAccessToken), rescoped to the record's project;
- ``application_credential``: a Keystone application credential kept in the vault.
The storage URL is the catalog's public object-store endpoint for the record's or the admin's region.

Swift v1 auth (tempauth, swauth; ``auth_version: "1"``): ``swift_v1``, a Swift user and key kept in
the vault, sent to the admin's ``v1_auth_url``; the storage URL is the one that endpoint answers with.
"""

import logging
from datetime import datetime, timedelta, timezone
from typing import Callable, Optional

import requests
from galaxy import exceptions
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from ...authz.errors import ReauthenticationRequired
from ..cloud import OidcLogin, quiet_sdk_debug_logging
from . import OpenStackAuthzConfig, OpenStackSettings
from .storage import SwiftCredentials

log = logging.getLogger(__name__)

TIMEOUT = 30  # seconds for each request to Keystone or the v1 auth endpoint


def mint(settings: OpenStackSettings, config: OpenStackAuthzConfig, login: Optional[OidcLogin]) -> SwiftCredentials:
    """Cloud.mint: the user's access token is asked for only where the record's mode exchanges it."""
    return openstack_credentials(settings, config, lambda: login.access_token())


def openstack_credentials(
    settings: OpenStackSettings, config: OpenStackAuthzConfig, access_token: Callable[[], str]
) -> SwiftCredentials:
    """A Swift token for the record; ``access_token()`` is called only for OIDC federation."""
    quiet_sdk_debug_logging()  # keystoneauth logs requests at DEBUG
    if config.mode not in settings.authz_modes:
        raise exceptions.ConfigDoesNotAllowException(
            f"This Galaxy's OpenStack uses auth version {settings.auth_version}, which cannot serve an "
            f"authorization of mode '{config.mode}'; replace it with one of: {', '.join(settings.authz_modes)}."
        )
    if config.mode == "swift_v1":
        return _swift_v1(settings, config)
    return _keystone(settings, config, access_token)


# -- Keystone v3 ---------------------------------------------------------------------------------


def keystone_v3_url(settings: OpenStackSettings) -> str:
    """The admin's Keystone URL, ending in /v3 as keystoneauth's v3 plugins need (invariant 4 (docs/design.rst):
    a record's own auth_url is never used; the manager only lets it repeat this one)."""
    if settings.keystone_url is None:
        raise exceptions.ServerNotConfiguredForRequest("providers.openstack.keystone_url is not configured.")
    url = str(settings.keystone_url).rstrip("/")
    return url if url.endswith("/v3") else f"{url}/v3"


def _keystone(
    settings: OpenStackSettings, config: OpenStackAuthzConfig, access_token: Callable[[], str]
) -> SwiftCredentials:
    auth_url = keystone_v3_url(settings)
    federated = config.mode == "oidc_federation"
    session = ks_session.Session(verify=settings.verify, timeout=TIMEOUT)
    region = config.region or settings.region
    try:
        if federated:
            access = _federated_access(auth_url, config, access_token, session)
        else:
            # An application credential is bound to its project: no scope to ask for.
            access = v3.ApplicationCredential(
                auth_url,
                application_credential_id=config.application_credential_id,
                application_credential_secret=config.application_credential_secret,
            ).get_access(session)
        storage_url = access.service_catalog.url_for(
            service_type="object-store", interface="public", region_name=region
        )
    except ks_exceptions.Unauthorized as e:
        if federated:  # the login was accepted (_federated_access): the project was not
            raise _project_refused(config, e) from e
        raise exceptions.ItemAccessibilityException(
            "Keystone refused the application credential of this authorization (wrong, expired or deleted); "
            "create a new one and update the authorization."
        ) from e
    except (ks_exceptions.Forbidden, ks_exceptions.NotFound) as e:
        raise _project_refused(config, e) from e
    except (ks_exceptions.EndpointNotFound, ks_exceptions.EmptyCatalog):
        where = f" in region '{region}'" if region else ""
        raise exceptions.ItemAccessibilityException(
            f"Keystone's catalog for this project has no public object-store (Swift) endpoint{where}."
        ) from None
    except (ks_exceptions.ConnectionError, ks_exceptions.RetriableConnectionFailure) as e:
        log.warning("Keystone at %s unreachable: %s", auth_url, type(e).__name__)
        raise exceptions.UpstreamProxyError(f"Keystone ({auth_url}) could not be reached; try again later.") from e
    except ks_exceptions.HttpError as e:
        log.warning("Keystone at %s answered HTTP %s", auth_url, e.http_status)
        raise exceptions.UpstreamProxyError(
            f"Keystone ({auth_url}) answered HTTP {e.http_status}; try again later."
        ) from e
    if not storage_url:
        raise exceptions.ItemAccessibilityException("Keystone's catalog for this project has no object-store endpoint.")
    return SwiftCredentials(storage_url, access.auth_token, access.expires)


def _project_refused(config: OpenStackAuthzConfig, error: ks_exceptions.HttpError) -> Exception:
    """Scoping to a project the identity has no role on, or one that does not exist."""
    project = config.project_id or config.project_name
    return exceptions.ItemAccessibilityException(
        f"Keystone refused a token for project '{project}' (HTTP {error.http_status}): check the project "
        "name or id and your role on it."
    )


def _federated_access(auth_url: str, config: OpenStackAuthzConfig, access_token: Callable[[], str], session):
    """The user's access token for an unscoped federated token, then that one for the project's.
    keystoneauth's OidcAccessToken does both in one call; two steps tell "Keystone does not accept
    your login" (log in again) from "no role on that project" (Keystone answers 401 to both)."""
    token = access_token()
    if not token:
        raise ReauthenticationRequired("Galaxy holds no OIDC access token for your login; log in to Galaxy again.")
    federation = v3.OidcAccessToken(auth_url, config.identity_provider, config.protocol, access_token=token)
    try:
        unscoped = federation.get_unscoped_auth_ref(session)
    except ks_exceptions.Unauthorized:
        raise ReauthenticationRequired(
            f"Keystone did not accept your login for identity provider '{config.identity_provider}'; "
            "log in to Galaxy again. If this persists, the Keystone mapping may not admit your identity."
        ) from None
    scoped = v3.Token(
        auth_url,
        unscoped.auth_token,
        project_id=config.project_id,
        project_name=None if config.project_id else config.project_name,
        project_domain_name=None if config.project_id else config.project_domain_name,
    )
    return scoped.get_access(session)


# -- Swift v1 auth -------------------------------------------------------------------------------


def _swift_v1(settings: OpenStackSettings, config: OpenStackAuthzConfig) -> SwiftCredentials:
    """GET the admin's v1 auth URL with X-Auth-User and X-Auth-Key (as swiftclient.get_auth_1_0
    does, which drops the token's expiry and logs the exchange at DEBUG)."""
    if settings.v1_auth_url is None:
        raise exceptions.ServerNotConfiguredForRequest("providers.openstack.v1_auth_url is not configured.")
    auth_url = str(settings.v1_auth_url)
    try:
        # No redirects: a redirect would carry the key to wherever it points.
        response = requests.get(
            auth_url,
            headers={"X-Auth-User": config.swift_user, "X-Auth-Key": config.swift_key},
            verify=settings.verify,
            timeout=TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as e:
        log.warning("Swift v1 auth at %s unreachable: %s", auth_url, type(e).__name__)
        raise exceptions.UpstreamProxyError(
            f"Swift's auth endpoint ({auth_url}) could not be reached; try again later."
        ) from e
    if response.status_code in (401, 403):
        raise exceptions.ItemAccessibilityException(
            f"Swift refused the key of user '{config.swift_user}' (HTTP {response.status_code}); "
            "update the authorization with a current key."
        )
    token = response.headers.get("X-Auth-Token") or response.headers.get("X-Storage-Token")
    storage_url = response.headers.get("X-Storage-Url")
    if not response.ok or not token or not storage_url:
        log.warning("Swift v1 auth at %s answered HTTP %s without a token", auth_url, response.status_code)
        raise exceptions.UpstreamProxyError(
            f"Swift's auth endpoint ({auth_url}) answered HTTP {response.status_code} without a token; try again later."
        )
    expires = None
    if response.headers.get("X-Auth-Token-Expires", "").isdigit():
        expires = datetime.now(timezone.utc) + timedelta(seconds=int(response.headers["X-Auth-Token-Expires"]))
    return SwiftCredentials(storage_url, token, expires)

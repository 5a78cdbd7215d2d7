"""Turning a cloud authorization into short-lived credentials, at the moment they are needed.

Only this module (with the vault reads of ``authz.manager``) sees credential material outside the
clouds' own minting code. It runs in the web process (to check a bucket before anything is
created) and in the job handler (when a transfer job is prepared); the credentials it returns are
never stored.
"""

import logging

from galaxy import exceptions
from galaxy.model import UserAuthnzToken

from ..config import PluginConfig
from ..contracts import Delegation
from ..model import CloudAuthz
from ..providers import cloud, quiet_sdk_debug_logging
from ..sessions import release_connection
from .errors import ReauthenticationRequired
from .manager import CloudAuthzManager

log = logging.getLogger(__name__)


class CredentialBroker:
    def __init__(self, app, plugin_config: PluginConfig, authz_manager: CloudAuthzManager):
        self.app = app
        self.plugin_config = plugin_config
        self.authz_manager = authz_manager

    def delegate(self, authz: CloudAuthz, user) -> Delegation:
        """Short-lived credentials for the record's cloud: the user's OIDC token exchanged where the
        record is secretless (only then is the token read, and refreshed if need be)."""
        settings = self.plugin_config.provider(authz.provider)
        if not settings.enabled:
            raise exceptions.ConfigDoesNotAllowException(
                f"Cloud provider '{authz.provider}' is no longer enabled on this Galaxy."
            )
        plugin = cloud(authz.provider)
        secrets = self.authz_manager.read_secrets(authz) if authz.vaulted_fields else {}
        config = plugin.authz_config_model.model_validate({**authz.config, **secrets})
        quiet_sdk_debug_logging()
        release_connection(self.app.model.session)  # minting waits on the cloud's token service
        credentials = plugin.mint(settings, config, GalaxyOidcLogin(self.app, authz, user))
        return Delegation(
            provider=authz.provider,
            settings=settings.model_dump(mode="json"),
            config=authz.config,
            credentials=credentials.to_json(),
        )


class GalaxyOidcLogin:
    """A record's OpenID Connect identity, as Galaxy holds it (``oidc_user_authnz_tokens``): its
    tokens, refreshed through Galaxy's own OIDC backend when expired (Galaxy refreshes both at once)."""

    def __init__(self, app, authz: CloudAuthz, user):
        self.app = app
        self.authz = authz
        self.username = str(user.username or user.id)

    def id_token(self) -> str:
        return self._token("id_token")

    def access_token(self) -> str:
        return self._token("access_token")

    def _token(self, kind: str) -> str:
        session = self.app.model.session
        authz = self.authz
        token = session.get(UserAuthnzToken, authz.authn_id) if authz.authn_id is not None else None
        if token is None or token.user_id != authz.user_id:
            raise exceptions.RequestParameterInvalidException(
                "The OpenID Connect identity of this authorization is gone; update it with a current authn_id."
            )
        provider = token.provider
        relogin = f"Log in to Galaxy again with '{provider}' (or your identity provider), then retry."
        manager = getattr(self.app, "authnz_manager", None)
        if manager is None:
            raise exceptions.ServerNotConfiguredForRequest(
                "OpenID Connect login is not enabled on this Galaxy (enable_oidc)."
            )
        # Galaxy has no public way to get a backend's strategy outside a web request: its private
        # AuthnzManager._get_authnz_backend and psa_authnz's Strategy are what its own token
        # decoding uses.
        from galaxy.authnz.psa_authnz import on_the_fly_config, Storage, Strategy

        success, message, backend = manager._get_authnz_backend(provider)
        if not success or backend is None:
            raise ReauthenticationRequired(
                f"The identity provider '{provider}' is not configured on this Galaxy any more. {relogin}"
            )
        # Name the provider as Galaxy's login page does (its <label>), not by its backend name.
        label = backend.config.get("LABEL") or provider
        relogin = f"Log in to Galaxy again with '{label}', then retry."
        on_the_fly_config(session)
        release_connection(session)  # a refresh waits on the identity provider
        try:
            value = token.get_id_token(Strategy(None, {}, Storage, backend.config))
            if kind != "id_token":
                value = (token.extra_data or {}).get(kind)
            release_connection(session)  # the exchange that follows waits on the cloud
        except Exception as e:  # social-core raises requests and auth errors alike
            log.info("Refreshing the id_token of identity %s failed: %s", token.id, e)
            raise ReauthenticationRequired(
                f"Your login with '{label}' has expired and could not be renewed. {relogin}"
            ) from e
        if not value:
            raise ReauthenticationRequired(f"Galaxy holds no {kind} for your login with '{label}'. {relogin}")
        return value

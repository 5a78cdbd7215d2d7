"""Turning a cloud authorization into short-lived credentials, at the moment they are needed.

Only this module (with the vault reads of ``authz.manager``) sees credential material. It runs in
the web process (to check a bucket before anything is created) and in the job handler (when a
transfer job is prepared); the credentials it returns are never stored.
"""

import logging
import re
from dataclasses import (
    dataclass,
    field,
)
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from galaxy import exceptions
from galaxy.model import UserAuthnzToken
from ..config import PluginConfig
from ..model import CloudAuthz
from ..providers import quiet_sdk_debug_logging
from ..providers.aws import AwsCredentials
from .configs import (
    AwsAuthzConfig,
    PROVIDER_CONFIGS,
)
from .errors import ReauthenticationRequired
from .manager import CloudAuthzManager

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delegation:
    """What a transfer needs: the provider, the admin's settings for it, the record's public
    config, and the short-lived credentials."""

    provider: str
    settings: dict
    config: dict
    credentials: Any = field(repr=False)

    def to_json_dict(self) -> dict:
        return {
            "provider": self.provider,
            "settings": self.settings,
            "config": self.config,
            "credentials": self.credentials.to_json(),
        }


def session_name(user) -> str:
    """STS role session name (shows in CloudTrail): the Galaxy user, within STS's 2-64 [\\w+=,.@-]."""
    name = re.sub(r"[^\w+=,.@-]", "-", f"galaxy-{user.username or user.id}")
    return name[:64]


class CredentialBroker:
    def __init__(self, app, plugin_config: PluginConfig, authz_manager: CloudAuthzManager):
        self.app = app
        self.plugin_config = plugin_config
        self.authz_manager = authz_manager

    def delegate(self, authz: CloudAuthz, user) -> Delegation:
        settings = self.plugin_config.provider(authz.provider)
        if not settings.enabled:
            raise exceptions.ConfigDoesNotAllowException(
                f"Cloud provider '{authz.provider}' is no longer enabled on this Galaxy."
            )
        secrets = self.authz_manager.read_secrets(authz) if authz.vaulted_fields else {}
        config = PROVIDER_CONFIGS[authz.provider].model_validate({**authz.config, **secrets})
        credentials = self.mint(authz, config, settings, user)
        return Delegation(authz.provider, settings.model_dump(mode="json"), authz.config, credentials)

    def mint(self, authz: CloudAuthz, config, settings, user):
        """Short-lived credentials for the record's cloud: the user's OIDC token exchanged where
        the record is secretless (only then is the token read, and refreshed if need be)."""
        provider = authz.provider
        if provider == "aws":
            assert isinstance(config, AwsAuthzConfig)
            if config.mode == "static_key":
                return AwsCredentials(config.access_key_id or "", config.secret_access_key or "", None, None)
            return self.assume_role(config, self.id_token(authz), session_name(user))
        quiet_sdk_debug_logging()
        if provider == "azure":
            from .azure import azure_credentials

            return azure_credentials(settings, config, lambda: self.id_token(authz))
        if provider == "gcp":
            from .gcp import gcp_credentials

            return gcp_credentials(settings, config, lambda: self.id_token(authz))
        if provider == "openstack":
            from .openstack import openstack_credentials

            # Keystone's OIDC federation takes the access token (it asks the provider's userinfo).
            return openstack_credentials(settings, config, lambda: self.oidc_token(authz, "access_token"))
        raise exceptions.ServerNotConfiguredForRequest(f"No credential delegation for provider '{provider}'.")

    # -- OIDC ----------------------------------------------------------------------------------

    def id_token(self, authz: CloudAuthz) -> str:
        return self.oidc_token(authz, "id_token")

    def oidc_token(self, authz: CloudAuthz, kind: str) -> str:
        """The identity's ``id_token`` or ``access_token``, refreshed through Galaxy's own OIDC
        backend when expired (Galaxy refreshes both at once)."""
        session = self.app.model.session
        token = session.get(UserAuthnzToken, authz.authn_id) if authz.authn_id is not None else None
        if token is None or token.user_id != authz.user_id:
            raise exceptions.RequestParameterInvalidException(
                "The OpenID Connect identity of this authorization is gone; update it with a current authn_id."
            )
        provider = token.provider
        relogin = f"Log in to Galaxy again with '{provider}' (or your identity provider), then retry."
        manager = getattr(self.app, "authnz_manager", None)
        if manager is None:
            raise exceptions.ServerNotConfiguredForRequest("OpenID Connect login is not enabled on this Galaxy (enable_oidc).")
        # Galaxy has no public way to get a backend's strategy outside a web request; this is how
        # its own token decoding does it (galaxy.authnz.psa_authnz).
        from galaxy.authnz.psa_authnz import (
            on_the_fly_config,
            Storage,
            Strategy,
        )

        success, message, backend = manager._get_authnz_backend(provider)
        if not success or backend is None:
            raise ReauthenticationRequired(f"The identity provider '{provider}' is not configured on this Galaxy any more. {relogin}")
        # Name the provider as Galaxy's login page does (its <label>), not by its backend name.
        label = backend.config.get("LABEL") or provider
        relogin = f"Log in to Galaxy again with '{label}', then retry."
        on_the_fly_config(session)
        try:
            value = token.get_id_token(Strategy(None, {}, Storage, backend.config))
            if kind != "id_token":
                value = (token.extra_data or {}).get(kind)
        except Exception as e:  # social-core raises requests and auth errors alike
            log.info("Refreshing the id_token of identity %s failed: %s", token.id, e)
            raise ReauthenticationRequired(f"Your login with '{label}' has expired and could not be renewed. {relogin}")
        if not value:
            raise ReauthenticationRequired(f"Galaxy holds no {kind} for your login with '{label}'. {relogin}")
        return value

    # -- AWS -----------------------------------------------------------------------------------

    def assume_role(self, config: AwsAuthzConfig, id_token: str, role_session_name: str) -> AwsCredentials:
        settings = self.plugin_config.providers.aws
        quiet_sdk_debug_logging()
        # AssumeRoleWithWebIdentity is unsigned: the id_token is the credential. Unsigned also
        # means no credential chain is ever consulted (invariant 3).
        sts = boto3.session.Session().client(
            "sts",
            endpoint_url=str(settings.sts_endpoint_url) if settings.sts_endpoint_url else None,
            region_name=settings.sts_region,
            config=Config(signature_version=UNSIGNED, retries={"mode": "standard", "max_attempts": 3}),
        )
        try:
            response = sts.assume_role_with_web_identity(
                RoleArn=config.role_arn,
                RoleSessionName=role_session_name,
                WebIdentityToken=id_token,
                DurationSeconds=config.token_ttl,
            )
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            detail = e.response.get("Error", {}).get("Message", code)
            if code in ("ExpiredTokenException", "InvalidIdentityToken", "IDPRejectedClaim"):
                raise ReauthenticationRequired(f"AWS did not accept your login token ({detail}); log in to Galaxy again.")
            raise exceptions.ItemAccessibilityException(
                f"AWS refused to let your login assume {config.role_arn}: {detail}. Check the role's trust policy "
                "for this Galaxy's identity provider, and token_ttl against the role's maximum session duration."
            )
        except BotoCoreError as e:
            log.warning("STS unreachable: %s", e)
            raise exceptions.UpstreamProxyError(f"AWS STS could not be reached ({type(e).__name__}); try again later.")
        issued = response["Credentials"]
        return AwsCredentials(
            issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"], issued["Expiration"]
        )


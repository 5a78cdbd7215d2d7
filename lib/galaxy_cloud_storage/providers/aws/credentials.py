"""AWS: an authorization -> keys: the user's id_token exchanged for temporary keys by STS
AssumeRoleWithWebIdentity at the admin's endpoint, or (stored-secret mode) the record's static key.

The call is unsigned: the id_token is the credential, and no credential chain is ever consulted
(invariant 3, docs/design.rst). The keys live ``token_ttl`` seconds and are never stored.
"""

import logging
import re
from typing import Optional

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from galaxy import exceptions

from ...authz.errors import ReauthenticationRequired
from ..cloud import OidcLogin, quiet_sdk_debug_logging
from . import AwsAuthzConfig, AwsSettings
from .storage import AwsCredentials

log = logging.getLogger(__name__)

# Refusals that a new login cures.
TOKEN_REFUSED = ("ExpiredTokenException", "InvalidIdentityToken", "IDPRejectedClaim")


def session_name(username: str) -> str:
    """STS role session name (shows in CloudTrail): the Galaxy user, within STS's 2-64 [\\w+=,.@-]."""
    return re.sub(r"[^\w+=,.@-]", "-", f"galaxy-{username}")[:64]


def mint(settings: AwsSettings, config: AwsAuthzConfig, login: Optional[OidcLogin]) -> AwsCredentials:
    """The record's static key (an S3-compatible store, from the vault), or temporary keys for its role."""
    if config.mode == "static_key":
        return AwsCredentials(config.access_key_id or "", config.secret_access_key or "", None, None)
    return assume_role(settings, config, login)


def assume_role(settings: AwsSettings, config: AwsAuthzConfig, login: OidcLogin) -> AwsCredentials:
    quiet_sdk_debug_logging()
    sts = boto3.session.Session().client(
        "sts",
        endpoint_url=str(settings.sts_endpoint_url) if settings.sts_endpoint_url else None,
        region_name=settings.sts_region,
        config=Config(signature_version=UNSIGNED, retries={"mode": "standard", "max_attempts": 3}),
    )
    try:
        response = sts.assume_role_with_web_identity(
            RoleArn=config.role_arn,
            RoleSessionName=session_name(login.username),
            WebIdentityToken=login.id_token(),
            DurationSeconds=config.token_ttl,
        )
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        detail = e.response.get("Error", {}).get("Message", code)
        if code in TOKEN_REFUSED:
            raise ReauthenticationRequired(
                f"AWS did not accept your login token ({detail}); log in to Galaxy again."
            ) from e
        raise exceptions.ItemAccessibilityException(
            f"AWS refused to let your login assume {config.role_arn}: {detail}. Check the role's trust policy "
            "for this Galaxy's identity provider, and token_ttl against the role's maximum session duration."
        ) from e
    except BotoCoreError as e:
        log.warning("STS unreachable: %s", e)
        raise exceptions.UpstreamProxyError(
            f"AWS STS could not be reached ({type(e).__name__}); try again later."
        ) from e
    issued = response["Credentials"]
    return AwsCredentials(
        issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"], issued["Expiration"]
    )

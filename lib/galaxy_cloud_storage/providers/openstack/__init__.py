"""OpenStack Swift: the admin's settings, a user's record, Swift's naming rules.

Credentials: a Swift token and storage URL from the admin's Keystone v3 (OIDC federation with the
user's access token, or a vaulted application credential) or from Swift's own v1 auth with a
vaulted user and key (``credentials.py``). Storage: python-swiftclient (``storage.py``).
"""

from typing import Annotated, ClassVar, Literal, Optional

from pydantic import Field, field_validator, HttpUrl, model_validator, StringConstraints

from ..cloud import Cloud, RecordNotAllowed
from ..settings import exclusive, ProviderAuthzConfig, ProviderSettings, require, Secret
from .names import SwiftNameRules


class OpenStackSettings(ProviderSettings):
    """Swift behind Keystone v3 (production: OIDC federation or application credentials), or behind
    Swift's own v1 auth (tempauth, swauth: a user and key per account, stored in the vault)."""

    enabled: bool = False
    auth_version: Literal["3", "1"] = Field(
        "3",
        description="How users authenticate: '3' for Keystone v3 (keystone_url; OIDC federation or "
        "application credentials), '1' for Swift's own v1 auth (v1_auth_url; a Swift user and key kept "
        "in the vault, so allow_stored_secrets must be true).",
    )
    keystone_url: Optional[HttpUrl] = Field(
        None,
        description="Keystone's v3 endpoint, e.g. https://keystone.example.org:5000/v3 (auth_version 3). "
        "Swift's URL is read from the catalog Keystone returns with each token.",
    )
    v1_auth_url: Optional[HttpUrl] = Field(
        None,
        description="Swift's v1 auth endpoint, e.g. https://swift.example.org/auth/v1.0 (auth_version 1). "
        "Swift's URL is the X-Storage-Url it answers with.",
    )
    region: Optional[str] = Field(
        None,
        description="Region of the object-store endpoint to take from Keystone's catalog (a record may "
        "name another region of the same catalog). Default: the catalog's only or first one.",
    )
    segment_size: int = Field(
        16 * 1024 * 1024,
        ge=1,
        description="Objects above this size go up as a Static Large Object of segments of it (bytes), "
        "4 at a time; they grow where the cluster's segment limit needs it.",
    )

    @field_validator("auth_version", mode="before")
    @classmethod
    def _version_as_text(cls, value):
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _auth_endpoint(self):
        if not self.enabled:
            return self
        if self.auth_version == "3" and self.keystone_url is None:
            raise ValueError("keystone_url is required when OpenStack is enabled with auth_version 3")
        if self.auth_version == "1":
            if self.v1_auth_url is None:
                raise ValueError("v1_auth_url is required when OpenStack is enabled with auth_version 1")
            if not self.allow_stored_secrets:
                raise ValueError("auth_version 1 keeps each user's Swift key in the vault: set allow_stored_secrets")
        return self

    @property
    def authz_modes(self) -> tuple[str, ...]:
        """The OpenStackAuthzConfig modes this auth version can serve."""
        return ("swift_v1",) if self.auth_version == "1" else ("oidc_federation", "application_credential")


class OpenStackAuthzConfig(ProviderAuthzConfig):
    """OpenStack: Keystone OIDC federation with the user's access token; or (admin-enabled) a Keystone
    application credential; or, where the admin's Swift uses its own v1 auth (tempauth, swauth)
    instead of Keystone, a Swift user and key.

    Which modes a Galaxy serves depends on the admin's ``auth_version`` (OpenStackSettings.authz_modes),
    which this schema cannot see: OpenStackCloud.check_record checks it when a record is saved, and
    credentials.openstack_credentials again when it is used.
    """

    auth_url: Optional[str] = Field(
        None, description="Keystone URL; when given it must be the one the admin configured."
    )
    project_name: Optional[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = None
    project_id: Optional[Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]] = None
    project_domain_name: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "Default"
    region: Optional[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        None, description="Region of the object-store endpoint in Keystone's catalog (default: the admin's)."
    )
    identity_provider: Optional[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        None, description="Keystone identity provider mapped to this Galaxy's OIDC issuer (federation)."
    )
    protocol: Optional[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        None, description="Keystone federation protocol, usually 'openid'."
    )
    application_credential_id: Optional[Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]] = None
    application_credential_secret: Optional[Secret] = None
    swift_user: Optional[Annotated[str, StringConstraints(pattern=r"^[^\s]{1,256}$")]] = Field(
        None,
        description="Swift v1 auth user, e.g. 'account:user' for tempauth (only where the admin's Swift uses v1 auth).",
    )
    swift_key: Optional[Secret] = Field(None, description="Swift v1 auth key of swift_user (stored-secret mode).")

    secret_fields: ClassVar[tuple[str, ...]] = ("application_credential_secret", "swift_key")
    modes = {"swift_v1": "swift_user", "application_credential": "application_credential_id", "oidc_federation": None}

    @model_validator(mode="after")
    def _one_mode(self):
        app_cred = ("application_credential_id", "application_credential_secret")
        swift_v1 = ("swift_user", "swift_key")
        keystone = ("auth_url", "project_name", "project_id", "region", "identity_provider", "protocol", *app_cred)
        exclusive(self, keystone, swift_v1, "Keystone fields or a Swift v1 user and key")
        if self.swift_user is not None or self.swift_key is not None:
            require(self, swift_v1, "Swift v1 auth")
            return self
        exclusive(
            self, ("identity_provider", "protocol"), app_cred, "identity_provider/protocol or an application credential"
        )
        if self.application_credential_id is None and self.application_credential_secret is None:
            require(self, ("identity_provider", "protocol"), "Keystone OIDC federation")
            if self.project_name is None and self.project_id is None:
                raise ValueError("project_name or project_id required for Keystone OIDC federation")
        else:
            require(self, app_cred, "an application credential")
        return self


class OpenStackCloud(Cloud[OpenStackSettings, OpenStackAuthzConfig]):
    name = "openstack"
    names = SwiftNameRules()
    sdk_loggers = ("swiftclient", "keystoneauth")

    def check_record(self, settings: OpenStackSettings, config: OpenStackAuthzConfig) -> None:
        if config.mode not in settings.authz_modes:
            raise RecordNotAllowed(
                None,
                f"this Galaxy's {self.name} takes {' or '.join(settings.authz_modes)} authorizations, "
                f"not {config.mode}.",
            )
        # Invariant 4 (docs/design.rst): a user may name an endpoint only to repeat the admin's.
        if config.auth_url is not None:
            allowed = str(settings.keystone_url)
            if config.auth_url.rstrip("/") != allowed.rstrip("/"):
                raise RecordNotAllowed(
                    "auth_url", f"this Galaxy's Keystone is {allowed}; leave auth_url out or give that URL."
                )

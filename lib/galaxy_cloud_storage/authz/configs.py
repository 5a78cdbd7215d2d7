"""What a user's cloud authorization record may hold, per provider.

Each schema follows its cloud's own delegation mechanism. Secretless modes (the default) name what
Galaxy needs to exchange the user's OIDC id_token for short-lived credentials; the optional
secret-bearing modes hold a long-lived secret that lives only in Galaxy's vault and only when the
admin allows it. No schema has an endpoint field that reaches the network unchecked: endpoints are
the admin's (invariant 4).
"""

from typing import (
    Annotated,
    ClassVar,
    Optional,
)

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

# Shown in place of a stored secret; sending it back in a PUT keeps the stored value.
REDACTED = "********"

_Secret = Annotated[str, StringConstraints(min_length=1, max_length=8192)]
_Uuid = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    ),
]


class ProviderAuthzConfig(BaseModel):
    """Base of the provider schemas: unknown fields are refused, secrets are declared."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    #: fields kept in the vault, never in the database or a response
    secret_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def mode(self) -> str:
        raise NotImplementedError

    @property
    def uses_stored_secret(self) -> bool:
        return any(getattr(self, name) is not None for name in self.secret_fields)

    @property
    def needs_oidc_identity(self) -> bool:
        return not self.uses_stored_secret

    def public_dict(self) -> dict:
        """The part of the config that may be stored in the database and shown to its owner."""
        return self.model_dump(exclude_none=True, exclude=set(self.secret_fields))

    def secret_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in self.secret_fields if getattr(self, name) is not None}


def _exclusive(config: BaseModel, secretless: tuple[str, ...], secret: tuple[str, ...], hint: str) -> None:
    given_secretless = [f for f in secretless if getattr(config, f) is not None]
    given_secret = [f for f in secret if getattr(config, f) is not None]
    if given_secretless and given_secret:
        raise ValueError(f"give either {hint}, not both ({', '.join(given_secretless + given_secret)} were given)")


def _require(config: BaseModel, fields: tuple[str, ...], mode: str) -> None:
    missing = [f for f in fields if getattr(config, f) is None]
    if missing:
        raise ValueError(f"{', '.join(missing)} required for {mode}")


class AwsAuthzConfig(ProviderAuthzConfig):
    """AWS: STS AssumeRoleWithWebIdentity with the user's id_token, or (admin-enabled) a static key."""

    role_arn: Optional[
        Annotated[
            str, StringConstraints(max_length=600, pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$")
        ]
    ] = Field(None, description="IAM role the user's OIDC identity may assume, e.g. arn:aws:iam::123456789012:role/galaxy")
    token_ttl: int = Field(3600, ge=900, le=43200, description="Lifetime of the temporary credentials (seconds).")
    region: Optional[Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")]] = Field(
        None, description="The bucket's AWS region, in the admin's partition (default: the admin's region)."
    )
    access_key_id: Optional[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/=_-]{3,128}$")]] = Field(
        None, description="Static key id for an S3-compatible store (stored-secret mode)."
    )
    secret_access_key: Optional[_Secret] = None

    secret_fields: ClassVar[tuple[str, ...]] = ("secret_access_key",)

    @model_validator(mode="after")
    def _one_mode(self):
        static = ("access_key_id", "secret_access_key")
        _exclusive(self, ("role_arn",), static, "role_arn or access_key_id with secret_access_key")
        if self.role_arn is None:
            if self.access_key_id is None and self.secret_access_key is None:
                raise ValueError("role_arn required (the IAM role Galaxy assumes with your OIDC login)")
            _require(self, static, "a static key")
        return self

    @property
    def mode(self) -> str:
        return "web_identity" if self.role_arn else "static_key"


class AzureAuthzConfig(ProviderAuthzConfig):
    """Azure: a federated credential (the id_token as client assertion), or (admin-enabled) a
    service principal secret or a SAS token."""

    tenant_id: Optional[_Uuid] = Field(None, description="Microsoft Entra tenant (directory) id.")
    client_id: Optional[_Uuid] = Field(
        None, description="Application (client) id holding a federated credential for this Galaxy's OIDC issuer."
    )
    storage_account: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{3,24}$")] = Field(
        ..., description="Storage account name."
    )
    client_secret: Optional[_Secret] = None
    sas_token: Optional[_Secret] = None

    secret_fields: ClassVar[tuple[str, ...]] = ("client_secret", "sas_token")

    @model_validator(mode="after")
    def _one_mode(self):
        if self.client_secret is not None and self.sas_token is not None:
            raise ValueError("give either client_secret or sas_token, not both")
        if self.sas_token is not None:
            _exclusive(self, ("tenant_id", "client_id"), ("sas_token",), "tenant_id/client_id or sas_token")
        else:
            _require(self, ("tenant_id", "client_id"), "a federated credential or client secret")
        return self

    @property
    def mode(self) -> str:
        if self.sas_token:
            return "sas"
        return "client_secret" if self.client_secret else "federated"


class GcpAuthzConfig(ProviderAuthzConfig):
    """GCP: workload identity federation (the id_token as subject token), optionally impersonating
    a service account; or (admin-enabled) a service account key."""

    audience: Optional[
        Annotated[
            str,
            StringConstraints(
                pattern=r"^//iam\.googleapis\.com/projects/\d{1,20}/locations/global/workloadIdentityPools/"
                r"[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32}$"
            ),
        ]
    ] = Field(None, description="Workload identity pool provider, //iam.googleapis.com/projects/NUMBER/...")
    service_account: Optional[
        Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.:-]+\.gserviceaccount\.com$")]
    ] = Field(None, description="Service account to impersonate (optional).")
    project: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")] = Field(
        ..., description="Project id used for billing and bucket listing."
    )
    service_account_key: Optional[_Secret] = Field(None, description="A service account key (JSON), stored-secret mode.")

    secret_fields: ClassVar[tuple[str, ...]] = ("service_account_key",)

    @model_validator(mode="after")
    def _one_mode(self):
        _exclusive(
            self, ("audience", "service_account"), ("service_account_key",), "audience or service_account_key"
        )
        if self.service_account_key is None:
            _require(self, ("audience",), "workload identity federation")
        else:
            _check_service_account_key(self.service_account_key)
        return self

    @property
    def mode(self) -> str:
        return "service_account_key" if self.service_account_key else "workload_identity"


def _check_service_account_key(text: str) -> None:
    import json

    try:
        key = json.loads(text)
    except ValueError:
        raise ValueError("service_account_key must be the JSON key file's content")
    if not isinstance(key, dict) or key.get("type") != "service_account":
        raise ValueError('service_account_key must be a key file with "type": "service_account"')
    missing = [f for f in ("client_email", "private_key", "token_uri") if not key.get(f)]
    if missing:
        raise ValueError(f"service_account_key lacks {', '.join(missing)}")


class OpenStackAuthzConfig(ProviderAuthzConfig):
    """OpenStack: Keystone OIDC federation with the user's access token; or (admin-enabled) a Keystone
    application credential; or, where the admin's Swift uses its own v1 auth (tempauth, swauth)
    instead of Keystone, a Swift user and key.

    Which modes a Galaxy serves depends on the admin's ``auth_version`` (OpenStackSettings.authz_modes),
    which this schema cannot see: the authorization manager checks it when a record is saved, and
    authz.openstack.openstack_credentials again when it is used.
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
    application_credential_secret: Optional[_Secret] = None
    swift_user: Optional[Annotated[str, StringConstraints(pattern=r"^[^\s]{1,256}$")]] = Field(
        None, description="Swift v1 auth user, e.g. 'account:user' for tempauth (only where the admin's Swift uses v1 auth)."
    )
    swift_key: Optional[_Secret] = Field(None, description="Swift v1 auth key of swift_user (stored-secret mode).")

    secret_fields: ClassVar[tuple[str, ...]] = ("application_credential_secret", "swift_key")

    @model_validator(mode="after")
    def _one_mode(self):
        app_cred = ("application_credential_id", "application_credential_secret")
        swift_v1 = ("swift_user", "swift_key")
        keystone = ("auth_url", "project_name", "project_id", "region", "identity_provider", "protocol", *app_cred)
        _exclusive(self, keystone, swift_v1, "Keystone fields or a Swift v1 user and key")
        if self.swift_user is not None or self.swift_key is not None:
            _require(self, swift_v1, "Swift v1 auth")
            return self
        _exclusive(self, ("identity_provider", "protocol"), app_cred, "identity_provider/protocol or an application credential")
        if self.application_credential_id is None and self.application_credential_secret is None:
            _require(self, ("identity_provider", "protocol"), "Keystone OIDC federation")
            if self.project_name is None and self.project_id is None:
                raise ValueError("project_name or project_id required for Keystone OIDC federation")
        else:
            _require(self, app_cred, "an application credential")
        return self

    @property
    def mode(self) -> str:
        if self.swift_user is not None:
            return "swift_v1"
        return "application_credential" if self.application_credential_id else "oidc_federation"


PROVIDER_CONFIGS: dict[str, type[ProviderAuthzConfig]] = {
    "aws": AwsAuthzConfig,
    "azure": AzureAuthzConfig,
    "gcp": GcpAuthzConfig,
    "openstack": OpenStackAuthzConfig,
}

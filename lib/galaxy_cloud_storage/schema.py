"""Request and response models of the plugin's API (seed-compatible, documented for OpenAPI)."""

from datetime import datetime
from typing import (
    Annotated,
    Any,
    Literal,
    Optional,
)

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from galaxy.schema.fields import (
    DecodedDatabaseIdField,
    EncodedDatabaseIdField,
)

ProviderName = Literal["aws", "azure", "gcp", "openstack"]

ProviderField = Field(
    ...,
    description="The cloud: `aws` (Amazon S3), `azure` (Azure Blob Storage), `gcp` (Google Cloud Storage) "
    "or `openstack` (OpenStack Swift).",
)
ConfigField = Field(
    ...,
    description="How Galaxy gets credentials for this cloud, e.g. `{\"role_arn\": \"arn:aws:iam::123456789012:role/galaxy\"}` "
    "for `aws`. The fields of each provider are described in the plugin's README.",
)
AuthnIdField = Field(
    None,
    description="Encoded id of one of your OpenID Connect identities (`GET /authnz/`). Its id_token is exchanged "
    "for short-lived cloud credentials. May be left out when you have exactly one identity.",
)
DescriptionField = Field(None, max_length=1024, description="A note of your own about this authorization.")


class _Payload(BaseModel):
    # A misspelt field is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class CreateCloudAuthzPayload(_Payload):
    provider: ProviderName = ProviderField
    config: dict[str, Any] = ConfigField
    authn_id: Optional[DecodedDatabaseIdField] = AuthnIdField
    description: Optional[str] = DescriptionField


class UpdateCloudAuthzPayload(_Payload):
    provider: Optional[ProviderName] = Field(
        None, description="May be given but not changed: create a new authorization for another cloud."
    )
    config: Optional[dict[str, Any]] = Field(
        None,
        description="Replaces the whole config. A secret field sent back as `********` (as shown) keeps its stored value.",
    )
    authn_id: Optional[DecodedDatabaseIdField] = AuthnIdField
    description: Optional[str] = DescriptionField


class CloudAuthzResponse(BaseModel):
    model_class: Literal["CloudAuthz"] = "CloudAuthz"
    id: EncodedDatabaseIdField = Field(..., description="Encoded id of this authorization (the `authz_id` of get and send).")
    user_id: EncodedDatabaseIdField
    authn_id: Optional[EncodedDatabaseIdField] = Field(None, description="Encoded id of the OIDC identity used.")
    provider: ProviderName
    config: dict[str, Any] = Field(..., description="The config, with every secret field shown as `********`.")
    description: Optional[str] = None
    create_time: datetime
    last_update: datetime
    last_activity: datetime = Field(..., description="When Galaxy last used this authorization.")


CloudAuthzListResponse = Annotated[list[CloudAuthzResponse], Field(description="Your cloud authorizations.")]

"""The admin's configuration of the plugin: one YAML file.

Its path comes from, in order: the ``cloud_storage_config_file`` key in galaxy.yml (relative to
Galaxy's ``config_dir``), the ``GALAXY_CLOUD_STORAGE_CONFIG`` environment variable, or
``<config_dir>/cloud_storage_conf.yml`` when that file exists. Without any file, the public clouds'
own endpoints are used for the secretless modes, and OpenStack (which has no public endpoint) is
off. Endpoints live only here: invariant 4 says a user can never choose one.
"""

import os
from typing import (
    Any,
    Literal,
    Optional,
)

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    field_validator,
    model_validator,
)

CONFIG_FILE_KEY = "cloud_storage_config_file"
CONFIG_FILE_ENV = "GALAXY_CLOUD_STORAGE_CONFIG"
DEFAULT_CONFIG_FILE_NAME = "cloud_storage_conf.yml"
PROVIDER_NAMES = ("aws", "azure", "gcp", "openstack")


class InvalidPluginConfig(Exception):
    """The admin's YAML file is unreadable or invalid; raised at start-up, never per request."""


class _AdminModel(BaseModel):
    # A typo in an admin's file should stop start-up with its name, not be ignored.
    model_config = ConfigDict(extra="forbid")


class ProviderSettings(_AdminModel):
    enabled: bool = True
    allow_stored_secrets: bool = Field(
        False,
        description="Let users keep a long-lived secret (static key, client secret, SAS, service account "
        "key, application credential) in Galaxy's vault. Needs vault_config_file in galaxy.yml.",
    )
    ca_bundle: Optional[str] = Field(
        None,
        description="PEM file of the certificate authorities to trust for this provider's endpoints "
        "(token and storage), for on-premise deployments with a private CA. Default: the system's.",
    )

    @property
    def verify(self):
        """What HTTP clients take as ``verify``: the admin's CA bundle, or True."""
        return self.ca_bundle or True


class AwsSettings(ProviderSettings):
    sts_endpoint_url: Optional[HttpUrl] = None
    sts_region: str = "us-east-1"
    s3_endpoint_url: Optional[HttpUrl] = None
    s3_region: Optional[str] = None


class AzureSettings(ProviderSettings):
    authority_host: HttpUrl = HttpUrl("https://login.microsoftonline.com")
    # ``{account}`` is replaced by the record's storage account name.
    blob_endpoint: str = "https://{account}.blob.core.windows.net"


class GcpSettings(ProviderSettings):
    token_url: HttpUrl = HttpUrl("https://sts.googleapis.com/v1/token")
    # Where service-account keys are exchanged for tokens; a key file's own token_uri is ignored,
    # since the user wrote it (invariant 4).
    oauth2_token_url: HttpUrl = HttpUrl("https://oauth2.googleapis.com/token")
    iam_credentials_endpoint: HttpUrl = HttpUrl("https://iamcredentials.googleapis.com")
    storage_endpoint: HttpUrl = HttpUrl("https://storage.googleapis.com")


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


class ProvidersSettings(_AdminModel):
    aws: AwsSettings = AwsSettings()
    azure: AzureSettings = AzureSettings()
    gcp: GcpSettings = GcpSettings()
    openstack: OpenStackSettings = OpenStackSettings()


class PluginConfig(_AdminModel):
    providers: ProvidersSettings = ProvidersSettings()
    max_request_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest request body the plugin's routes accept (bytes)."
    )
    source: Optional[str] = Field(None, exclude=True, description="The file this was read from, if any.")

    def provider(self, name: str) -> ProviderSettings:
        return getattr(self.providers, name)

    @property
    def enabled_providers(self) -> list[str]:
        return [name for name in PROVIDER_NAMES if self.provider(name).enabled]


def config_file_path(galaxy_config: Any = None, environ: Optional[dict] = None) -> Optional[str]:
    """Where the admin's file is, or None when there is none."""
    environ = os.environ if environ is None else environ
    config_dir = getattr(galaxy_config, "config_dir", None) or os.getcwd()
    configured = galaxy_config.get(CONFIG_FILE_KEY, None) if galaxy_config is not None else None
    configured = configured or environ.get(CONFIG_FILE_ENV)
    if configured:
        return os.path.join(config_dir, configured)
    default = os.path.join(config_dir, DEFAULT_CONFIG_FILE_NAME)
    return default if os.path.exists(default) else None


def load_config(path: Optional[str]) -> PluginConfig:
    if path is None:
        return PluginConfig()
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as e:
        raise InvalidPluginConfig(f"Cannot read the cloud storage configuration {path}: {e}") from e
    if not isinstance(raw, dict):
        raise InvalidPluginConfig(f"The cloud storage configuration {path} must be a YAML mapping")
    try:
        return PluginConfig(**raw, source=path)
    except (ValidationError, ValueError) as e:
        raise InvalidPluginConfig(f"Invalid cloud storage configuration {path}: {e}") from e

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
    Optional,
)

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
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
    enabled: bool = False
    keystone_url: Optional[HttpUrl] = None
    region: Optional[str] = None


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

    def model_post_init(self, __context: Any) -> None:
        openstack = self.providers.openstack
        if openstack.enabled and openstack.keystone_url is None:
            raise ValueError("providers.openstack.keystone_url is required when OpenStack is enabled")


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

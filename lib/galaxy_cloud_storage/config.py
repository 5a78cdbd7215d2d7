"""The admin's configuration of the plugin: one YAML file.

Its path comes from, in order: the ``cloud_storage_config_file`` key in galaxy.yml (relative to
Galaxy's ``config_dir``), the ``GALAXY_CLOUD_STORAGE_CONFIG`` environment variable, or
``<config_dir>/cloud_storage_conf.yml`` when that file exists. Without any file, the public clouds'
own endpoints are used for the secretless modes, and OpenStack (which has no public endpoint) is
off. Endpoints live only here: invariant 4 (docs/design.rst) says a user can never choose one. Each cloud's section
is the settings model its plugin declares (providers/<cloud>/__init__.py).
"""

import os
from typing import Any, Optional

import yaml
from pydantic import create_model, Field, ValidationError

from .providers import clouds
from .providers.settings import AdminModel, ProviderSettings

CONFIG_FILE_KEY = "cloud_storage_config_file"
CONFIG_FILE_ENV = "GALAXY_CLOUD_STORAGE_CONFIG"
DEFAULT_CONFIG_FILE_NAME = "cloud_storage_conf.yml"


class InvalidPluginConfig(Exception):
    """The admin's YAML file is unreadable or invalid; raised at start-up, never per request."""


def _providers_model() -> type[AdminModel]:
    """The ``providers`` section: one key per cloud, holding that cloud's settings model."""
    fields: dict[str, Any] = {
        name: (each.settings_model, Field(default_factory=each.settings_model)) for name, each in clouds().items()
    }
    return create_model("ProvidersSettings", __base__=AdminModel, **fields)


ProvidersSettings = _providers_model()


class PluginConfig(AdminModel):
    providers: ProvidersSettings = Field(default_factory=ProvidersSettings)  # type: ignore[valid-type]
    max_request_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest request body the plugin's routes accept (bytes)."
    )
    max_objects_per_request: int = Field(
        10000, ge=1, description="Most objects one get or send may copy (a folder get counts what it selects)."
    )
    source: Optional[str] = Field(None, exclude=True, description="The file this was read from, if any.")

    def provider(self, name: str) -> ProviderSettings:
        return getattr(self.providers, name)

    @property
    def enabled_providers(self) -> list[str]:
        return [name for name in type(self.providers).model_fields if self.provider(name).enabled]


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

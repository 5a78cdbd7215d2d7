"""One module per cloud, all behind ``providers.base.StorageBackend``: the only place that knows a
cloud's quirks. ``storage_backend`` builds the one for a delegation (see authz.delegation)."""

import importlib
import logging
from typing import Any

from .base import StorageBackend
from .names import NameRules

# Loggers that at DEBUG write request/response bodies, headers or URLs: an STS call's web identity
# token, temporary secrets, an Azure SAS in a query string, a Keystone token.
SDK_LOGGERS = (
    "botocore",
    "boto3",
    "s3transfer",
    "azure",
    "msal",
    "google.auth",
    "google.cloud",
    "google_auth_httplib2",
    "urllib3",
    "swiftclient",
    "keystoneauth",
)


def quiet_sdk_debug_logging() -> None:
    """Invariant 2: at DEBUG (Galaxy's default level) the cloud SDKs log request bodies (an STS
    call's web identity token), response bodies (temporary secrets) and URLs (a SAS). These
    loggers say nothing below INFO, whatever Galaxy's logging config says; called before every
    use of credentials, since Galaxy (re)configures logging after the plugin is imported."""
    for name in SDK_LOGGERS:
        if logging.getLogger(name).level < logging.INFO:  # unset (inheriting) or DEBUG
            logging.getLogger(name).setLevel(logging.INFO)


quiet_sdk_debug_logging()


# provider -> (module, backend class, credentials class, admin settings class)
BACKENDS = {
    "aws": ("aws", "AwsStorage", "AwsCredentials", "AwsSettings"),
    "azure": ("azure", "AzureStorage", "AzureCredentials", "AzureSettings"),
    "gcp": ("gcp", "GcsStorage", "GcpCredentials", "GcpSettings"),
    "openstack": ("openstack", "SwiftStorage", "SwiftCredentials", "OpenStackSettings"),
}


def _backend_module(provider: str):
    if provider not in BACKENDS:
        raise NotImplementedError(f"no storage backend for provider '{provider}'")
    # Imported on use: each cloud's SDK costs an import only where that cloud is used.
    return importlib.import_module(f"{__name__}.{BACKENDS[provider][0]}")


def name_rules(provider: str) -> NameRules:
    """The naming rules of ``provider``'s buckets and keys (providers.names)."""
    return getattr(_backend_module(provider), BACKENDS[provider][1]).names


def storage_backend(provider: str, settings: dict, config: dict, credentials: Any) -> StorageBackend:
    """The backend for ``provider`` at the admin's endpoints (``settings``) with the user's
    short-lived ``credentials`` (an object, or its JSON form inside a job); ``config`` is the
    authorization record's public part (region, storage account, project, ...)."""
    quiet_sdk_debug_logging()
    from .. import config as admin_config

    module = _backend_module(provider)
    _, backend_name, credentials_name, settings_name = BACKENDS[provider]
    if isinstance(credentials, dict):
        credentials = getattr(module, credentials_name).from_json(credentials)
    settings_model = getattr(admin_config, settings_name)(**settings)
    return getattr(module, backend_name)(settings_model, credentials, config)

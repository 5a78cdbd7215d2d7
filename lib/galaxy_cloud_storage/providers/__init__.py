"""One module per cloud, all behind ``providers.base.StorageBackend``: the only place that knows a
cloud's quirks. ``storage_backend`` builds the one for a delegation (see authz.delegation)."""

import logging
from datetime import datetime
from typing import Any

from .base import StorageBackend

SDK_LOGGERS = ("botocore", "boto3", "s3transfer")


def quiet_sdk_debug_logging() -> None:
    """Invariant 2: at DEBUG (Galaxy's default level) botocore logs request bodies (an STS call's
    web identity token) and response bodies (the temporary secret and session token). These
    loggers say nothing below INFO, whatever Galaxy's logging config says; called before every
    use of credentials, since Galaxy (re)configures logging after the plugin is imported."""
    for name in SDK_LOGGERS:
        if logging.getLogger(name).level < logging.INFO:  # unset (inheriting) or DEBUG
            logging.getLogger(name).setLevel(logging.INFO)


quiet_sdk_debug_logging()


def storage_backend(provider: str, settings: dict, config: dict, credentials: Any) -> StorageBackend:
    """The backend for ``provider`` at the admin's endpoints (``settings``) with the user's
    short-lived ``credentials`` (an object, or its JSON form inside a job)."""
    quiet_sdk_debug_logging()
    if provider == "aws":
        from ..config import AwsSettings
        from .aws import (
            AwsCredentials,
            AwsStorage,
        )

        if isinstance(credentials, dict):
            expiration = credentials.get("expiration")
            credentials = AwsCredentials(**{**credentials, "expiration": expiration and datetime.fromisoformat(expiration)})
        return AwsStorage(AwsSettings(**settings), credentials, region=config.get("region"))
    raise NotImplementedError(f"no storage backend for provider '{provider}'")

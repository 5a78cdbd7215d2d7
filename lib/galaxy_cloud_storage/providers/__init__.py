"""One module per cloud, all behind ``providers.base.StorageBackend``: the only place that knows a
cloud's quirks. ``storage_backend`` builds the one for a delegation (see authz.delegation)."""

import logging
from datetime import datetime
from typing import Any

from .base import StorageBackend

# Invariant 2: at DEBUG (Galaxy's default level) botocore logs request bodies (an STS call's web
# identity token) and response bodies (the temporary secret and session token). Credentials must
# never reach a log, so these loggers say nothing below INFO, whatever Galaxy's logging config.
for _name in ("botocore", "boto3", "s3transfer"):
    if logging.getLogger(_name).level < logging.INFO:  # unset (inheriting) or DEBUG
        logging.getLogger(_name).setLevel(logging.INFO)


def storage_backend(provider: str, settings: dict, config: dict, credentials: Any) -> StorageBackend:
    """The backend for ``provider`` at the admin's endpoints (``settings``) with the user's
    short-lived ``credentials`` (an object, or its JSON form inside a job)."""
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

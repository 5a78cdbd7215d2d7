"""Google Cloud Storage: the admin's settings, a user's record, Cloud Storage's naming rules.

Credentials: workload identity federation of the user's login at the admin's token URL,
optionally impersonating a service account, or a vaulted service account key exchanged at the
admin's OAuth 2.0 token URL (``credentials.py``). Storage: google-cloud-storage (``storage.py``).
"""

import json
from typing import Annotated, ClassVar, Optional

from pydantic import Field, HttpUrl, model_validator, StringConstraints

from ..cloud import Cloud
from ..settings import exclusive, MiB, ProviderAuthzConfig, ProviderSettings, require, Secret
from .names import GcsNameRules


class GcpSettings(ProviderSettings):
    token_url: HttpUrl = HttpUrl("https://sts.googleapis.com/v1/token")
    # Where service-account keys are exchanged for tokens; a key file's own token_uri is ignored,
    # since the user wrote it (invariant 4, docs/design.rst).
    oauth2_token_url: HttpUrl = HttpUrl("https://oauth2.googleapis.com/token")
    iam_credentials_endpoint: HttpUrl = HttpUrl("https://iamcredentials.googleapis.com")
    storage_endpoint: HttpUrl = HttpUrl("https://storage.googleapis.com")
    chunk_size: int = Field(
        16 * MiB,
        ge=256 * 1024,
        multiple_of=256 * 1024,
        description="Resumable upload chunks and download ranges (bytes; a multiple of 256 KiB).",
    )
    retry_timeout: float = Field(
        60.0, gt=0, le=3600, description="Seconds spent retrying one request (408, 429, 5xx, resets) before it fails."
    )


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
    service_account_key: Optional[Secret] = Field(None, description="A service account key (JSON), stored-secret mode.")

    secret_fields: ClassVar[tuple[str, ...]] = ("service_account_key",)
    modes = {"service_account_key": "service_account_key", "workload_identity": None}

    @model_validator(mode="after")
    def _one_mode(self):
        exclusive(self, ("audience", "service_account"), ("service_account_key",), "audience or service_account_key")
        if self.service_account_key is None:
            require(self, ("audience",), "workload identity federation")
        else:
            _check_service_account_key(self.service_account_key)
        return self


def _check_service_account_key(text: str) -> None:
    try:
        key = json.loads(text)
    except ValueError:
        raise ValueError("service_account_key must be the JSON key file's content") from None
    if not isinstance(key, dict) or key.get("type") != "service_account":
        raise ValueError('service_account_key must be a key file with "type": "service_account"')
    missing = [f for f in ("client_email", "private_key", "token_uri") if not key.get(f)]
    if missing:
        raise ValueError(f"service_account_key lacks {', '.join(missing)}")


class GcpCloud(Cloud[GcpSettings, GcpAuthzConfig]):
    name = "gcp"
    names = GcsNameRules()
    sdk_loggers = ("google.auth", "google.cloud", "google_auth_httplib2")

"""Azure Blob Storage: the admin's settings, a user's record, Azure's naming rules.

Credentials: an Entra app's federated credential for the user's login (or its client secret from
the vault) exchanged at the admin's authority for a storage bearer token, or a SAS passed through
(``credentials.py``). Storage: azure-storage-blob at the admin's account URL (``storage.py``).
"""

from typing import Annotated, ClassVar, Optional

from pydantic import Field, HttpUrl, model_validator, StringConstraints

from ..cloud import Cloud
from ..settings import exclusive, MiB, ProviderAuthzConfig, ProviderSettings, require, Secret, Uuid
from .names import AzureNameRules


class AzureSettings(ProviderSettings):
    authority_host: HttpUrl = HttpUrl("https://login.microsoftonline.com")
    # ``{account}`` is replaced by the record's storage account name.
    blob_endpoint: str = "https://{account}.blob.core.windows.net"
    # azure-storage-blob holds each block or range whole (twice, while it is copied), for each object
    # in flight: 16 MiB everywhere took a download of 8 x 64 MiB to 500 MiB. 8 MiB blocks still
    # allow blobs of 390 GiB (50,000 blocks).
    block_size: int = Field(8 * MiB, ge=64 * 1024, le=4000 * MiB, description="Upload block size (bytes).")
    chunk_size: int = Field(4 * MiB, ge=64 * 1024, le=4000 * MiB, description="Download range size (bytes).")
    retries: int = Field(3, ge=0, le=10, description="Retries of a request that met throttling, a 5xx or a reset.")


class AzureAuthzConfig(ProviderAuthzConfig):
    """Azure: a federated credential (the id_token as client assertion), or (admin-enabled) a
    service principal secret or a SAS token."""

    tenant_id: Optional[Uuid] = Field(None, description="Microsoft Entra tenant (directory) id.")
    client_id: Optional[Uuid] = Field(
        None, description="Application (client) id holding a federated credential for this Galaxy's OIDC issuer."
    )
    storage_account: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{3,24}$")] = Field(
        ..., description="Storage account name."
    )
    client_secret: Optional[Secret] = None
    sas_token: Optional[Secret] = None

    secret_fields: ClassVar[tuple[str, ...]] = ("client_secret", "sas_token")
    modes = {"sas": "sas_token", "client_secret": "client_secret", "federated": None}

    @model_validator(mode="after")
    def _one_mode(self):
        if self.client_secret is not None and self.sas_token is not None:
            raise ValueError("give either client_secret or sas_token, not both")
        if self.sas_token is not None:
            exclusive(self, ("tenant_id", "client_id"), ("sas_token",), "tenant_id/client_id or sas_token")
        else:
            require(self, ("tenant_id", "client_id"), "a federated credential or client secret")
        return self


class AzureCloud(Cloud[AzureSettings, AzureAuthzConfig]):
    name = "azure"
    names = AzureNameRules()
    sdk_loggers = ("azure", "msal")

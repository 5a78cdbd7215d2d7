"""Azure Blob Storage, through a cloudbridge Azure provider built on an account URL, and
azure-storage-blob's own chunked transfers.

cloudbridge 4.4.2's Azure provider cannot be used as it is: it hard-codes
``https://<account>.blob.core.windows.net`` (invariant 4 wants the admin's endpoint), authenticates
with a service-principal secret through Azure Resource Manager (it may even create a storage
account), reads unset settings from ``AZURE_*`` environment variables and ``~/.cloudbridge``
(invariant 3), and hands ``azure_access_token`` to the SDK as an account key or SAS, never as a
bearer token. ``_AccountUrlAzureProvider`` keeps cloudbridge's storage service (so the other layers
reach every cloud the same way) on a blob service client made from the admin's account URL and the
user's short-lived credential, and never touches Resource Manager. It is a subclass, not a patched
instance, because cloudbridge's multipart code re-creates providers with ``clone()``.

Bytes move through azure-storage-blob's transfer code, not cloudbridge's object API: it streams in
bounded blocks with bounded concurrency (invariant 8), and stages blocks that stay invisible until
the final block list is committed, so a failed upload leaves no object behind (invariant 7).
"""

import itertools
import logging
import os
import uuid
from dataclasses import (
    dataclass,
    field,
)
from datetime import (
    datetime,
    timezone,
)
from typing import (
    Any,
    Iterator,
    NoReturn,
    Optional,
)

from azure.core.credentials import (
    AccessToken,
    AccessTokenInfo,
    AzureSasCredential,
)
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import (
    BlobServiceClient,
    ExponentialRetry,
)
from cloudbridge.factory import (
    CloudProviderFactory,
    ProviderList,
)
from cloudbridge.providers.azure.azure_client import AzureClient
from cloudbridge.providers.azure.provider import AzureCloudProvider

from ..config import AzureSettings
from .names import AzureNameRules
from .base import (
    AccessDenied,
    BucketNotFound,
    JsonCredentials,
    MissingCredentials,
    ObjectInfo,
    ObjectNotFound,
    remove_file,
    StorageBackend,
    StorageError,
)

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# Uploads in blocks of BLOCK_SIZE, downloads in ranges of CHUNK_SIZE, CONCURRENCY at a time: memory
# stays bounded whatever the blob's size (invariant 8). Unlike s3transfer, which streams a part
# through small buffers, azure-storage-blob holds each block or range whole (twice, while it is
# copied), for each of the engine's objects in flight: 16 MiB everywhere took a download of
# 8 x 64 MiB to 500 MiB. 8 MiB blocks still allow blobs of 390 GiB (50,000 blocks).
BLOCK_SIZE = 8 * MiB
CHUNK_SIZE = 4 * MiB
CONCURRENCY = 4
RETRIES = 3  # azure-storage-blob's ExponentialRetry: throttling, 5xx and connection errors
STORAGE_SCOPE = "https://storage.azure.com/.default"
# cloudbridge's provider insists on a subscription id (it derives a default account name from it);
# this one is never sent anywhere, since Resource Manager is never called.
UNUSED_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
# What Azure answers when the credentials may not do something.
DENIED_CODES = {
    "AuthenticationFailed",
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationSourceIPMismatch",
    "AuthorizationProtocolMismatch",
    "AuthorizationServiceMismatch",
    "InsufficientAccountPermissions",
    "InvalidAuthenticationInfo",
}


@dataclass(frozen=True)
class AzureCredentials(JsonCredentials):
    """What a transfer job receives: a bearer token already exchanged by ``authz.azure`` (with its
    expiry), or a SAS token. Never the user's id_token nor a client secret."""

    access_token: Optional[str] = field(default=None, repr=False)
    expires_on: Optional[datetime] = None
    sas_token: Optional[str] = field(default=None, repr=False)

    @property
    def expired(self) -> bool:
        return self.expires_on is not None and _aware(self.expires_on) <= datetime.now(timezone.utc)


class ExpiredAccessToken(Exception):
    """The access token given to a job ran out. Not an AzureError on purpose: azure-storage-blob
    retries those, and waiting cannot make an expired token valid."""


class FixedTokenCredential:
    """An azure.core TokenCredential returning the one token it was given. It never refreshes: a
    job gets a token minted just before it runs, and an expired one is an error, not a prompt to
    look for another identity (invariant 3)."""

    def __init__(self, token: str, expires_on: Optional[datetime]) -> None:
        self._token = token
        self._expires_on = _aware(expires_on) if expires_on else None

    def __repr__(self) -> str:
        return f"FixedTokenCredential(expires_on={self._expires_on!r})"

    def _check(self) -> int:
        if self._expires_on is None:
            # Unknown expiry: say an hour, so that azure-core does not ask again on every request.
            return int(datetime.now(timezone.utc).timestamp()) + 3600
        if self._expires_on <= datetime.now(timezone.utc):
            raise ExpiredAccessToken(f"the Azure access token expired at {self._expires_on.isoformat()}")
        return int(self._expires_on.timestamp())

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, self._check())

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self._token, self._check())


class _AccountUrlAzureClient(AzureClient):
    """cloudbridge's Azure client with only its blob service, made from the admin's account URL
    and the user's credential. ``AzureClient.__init__`` is skipped on purpose: it builds a
    service-principal credential for Resource Manager, which this plugin never uses."""

    def __init__(self, config: Any) -> None:  # pylint: disable=super-init-not-called
        self._config = config
        self._block_blob_service: Optional[BlobServiceClient] = None

    @property
    def blob_service(self) -> BlobServiceClient:
        # The stock property first looks up (or creates) the storage account in Resource Manager.
        if self._block_blob_service is None:
            self._block_blob_service = BlobServiceClient(
                account_url=self._config["azure_account_url"],
                credential=self._config["azure_blob_credential"],
                **self._config["azure_blob_client_options"],
            )
        return self._block_blob_service


class _AccountUrlAzureProvider(AzureCloudProvider):
    """cloudbridge's Azure provider reading nothing but its config dict, and reaching nothing but
    the blob service at the account URL given there."""

    def _get_config_value(self, key: str, default_value: Any = None) -> Any:
        # The stock lookup falls back to ~/.cloudbridge, /etc/cloudbridge.ini and AZURE_* variables.
        value = self.config.get(key)
        return default_value if value is None or value == "" else value

    @property
    def azure_client(self) -> _AccountUrlAzureClient:
        # The stock property also runs _initialize(), which gets or creates a resource group.
        if self._azure_client is None:
            self._azure_client = _AccountUrlAzureClient(self.config)
        return self._azure_client


def cloudbridge_provider(config: dict) -> _AccountUrlAzureProvider:
    factory = CloudProviderFactory()
    # Registered first, our class answers for "azure" (and spares the discovery of every cloud's SDK).
    factory.register_provider_class(_AccountUrlAzureProvider)
    return factory.create_provider(ProviderList.AZURE, config)


class AzureStorage(StorageBackend):
    names = AzureNameRules()

    def __init__(
        self,
        settings: AzureSettings,
        credentials: AzureCredentials,
        config: dict,
        *,
        block_size: int = BLOCK_SIZE,
        chunk_size: int = CHUNK_SIZE,
        retries: int = RETRIES,
    ) -> None:
        account = config.get("storage_account")
        if not account:
            raise StorageError("This Azure authorization names no storage account; update it.")
        credential = _blob_credential(credentials)
        # Invariant 4: the admin's endpoint pattern; the user's record only names the account.
        self.account_url = settings.blob_endpoint.format(account=account).rstrip("/")
        if credentials.access_token and not self.account_url.lower().startswith("https://"):
            # azure-core never sends a bearer token in clear text; say so in the admin's terms.
            raise StorageError(
                f"Azure access tokens need an https blob endpoint, not {self.account_url}: check the "
                "blob_endpoint setting of the Azure provider."
            )
        self.block_size = block_size
        client_options = {
            "connection_verify": settings.verify,
            "connection_timeout": 10,
            # The SDK's default waits 15 s before its first retry; small and bounded instead.
            "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=retries),
            "max_block_size": block_size,
            "max_single_put_size": block_size,
            "max_single_get_size": chunk_size,
            "max_chunk_get_size": chunk_size,
        }
        self.provider = cloudbridge_provider(
            {
                "azure_subscription_id": UNUSED_SUBSCRIPTION,
                "azure_client_id": UNUSED_SUBSCRIPTION,
                "azure_secret": "unused",
                "azure_tenant": UNUSED_SUBSCRIPTION,
                "azure_resource_group": "unused",
                "azure_region_name": "unused",
                "azure_zone_name": "unused",
                "azure_storage_account": account,
                "azure_account_url": self.account_url,
                "azure_blob_credential": credential,
                "azure_blob_client_options": client_options,
            }
        )
        self.service: BlobServiceClient = self.provider.azure_client.blob_service

    def check_bucket(self, bucket: str) -> None:
        container = self.service.get_container_client(bucket)
        try:
            container.get_container_properties()
            return
        except HttpResponseError as e:
            if e.status_code != 403:
                self._raise(e, "reach", bucket)
        except Exception as e:
            self._raise(e, "reach", bucket)
        # A container-scoped SAS may list blobs but never read container properties: listing one
        # blob tells "denied" from "allowed to list" (404 still means missing).
        try:
            next(container.list_blobs(results_per_page=1).by_page(), None)
        except Exception as e:
            self._raise(e, "reach", bucket)

    def stat(self, bucket: str, key: str) -> Optional[ObjectInfo]:
        try:
            properties = self.service.get_blob_client(bucket, key).get_blob_properties()
        except ResourceNotFoundError as e:
            if _code(e) == "ContainerNotFound":
                self._raise(e, "read", bucket, key)
            return None  # a HEAD's 404 has no body: BlobNotFound, or a missing container
        except Exception as e:
            self._raise(e, "read", bucket, key)
        return ObjectInfo(key=key, size=properties.size)

    def list_sizes(self, bucket: str, prefix: str, limit: int) -> Iterator[tuple[str, int]]:
        blobs = self.service.get_container_client(bucket).list_blobs(name_starts_with=prefix or None)
        for blob in itertools.islice(blobs, limit):
            yield blob.name, blob.size

    def download(self, bucket: str, key: str, path: str) -> int:
        # Into a temporary file beside ``path``, renamed when complete: nothing at ``path`` ever
        # looks like the object unless it is the whole object.
        partial = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{uuid.uuid4().hex}.part")
        try:
            with open(partial, "wb") as fh:
                # Ranged GETs of max_chunk_get_size, CONCURRENCY at a time, written at their offsets.
                downloader = self.service.get_blob_client(bucket, key).download_blob(max_concurrency=CONCURRENCY)
                written = downloader.readinto(fh)
            if written != downloader.size:
                raise StorageError(
                    f"Could not download object '{key}' in bucket '{bucket}': got {written} of {downloader.size} bytes"
                )
            os.replace(partial, path)
        except BaseException as e:
            remove_file(partial)
            # ``path`` may have existed before (Galaxy creates its output files).
            remove_file(path)
            if isinstance(e, Exception):
                self._raise(e, "download", bucket, key)
            raise
        return written

    def upload(self, path: str, bucket: str, key: str) -> int:
        try:
            size = os.path.getsize(path)
            fh = open(path, "rb")
        except OSError as e:
            raise StorageError(f"Cannot read {path} to send it to '{key}' in bucket '{bucket}': {e.strerror}") from e
        try:
            with fh:
                # Above max_single_put_size the SDK stages blocks of max_block_size, CONCURRENCY at
                # a time, each read from the file as it goes, then commits the block list: a failure
                # before the commit leaves only uncommitted blocks, which are never visible and
                # which Azure discards (invariant 7).
                self.service.get_blob_client(bucket, key).upload_blob(
                    fh, length=size, overwrite=True, max_concurrency=CONCURRENCY
                )
        except Exception as e:
            self._raise(e, "upload", bucket, key)
        return size

    def _raise(self, error: Exception, action: str, bucket: str, key: Optional[str] = None) -> NoReturn:
        """Raise a StorageError saying what failed and why, fit for a user; unknown errors pass as they are."""
        if isinstance(error, StorageError):
            raise error
        mapped = self._storage_error(error, action, bucket, key)
        if mapped is None:
            raise error
        raise mapped from error

    def _storage_error(self, error: Exception, action: str, bucket: str, key: Optional[str]) -> Optional[StorageError]:
        what = f"object '{key}' in bucket '{bucket}'" if key is not None else f"bucket '{bucket}'"
        if isinstance(error, ExpiredAccessToken):
            return AccessDenied(f"Access to {what} denied: {error}; start the transfer again to get a new one")
        if isinstance(error, HttpResponseError) and error.status_code is not None:
            code = _code(error)
            if code == "ContainerNotFound" or (error.status_code == 404 and key is None):
                return BucketNotFound(f"Bucket '{bucket}' does not exist")
            if error.status_code == 404:
                return ObjectNotFound(f"Object '{key}' does not exist in bucket '{bucket}'")
            if error.status_code in (401, 403) or code in DENIED_CODES:
                reason = code or f"HTTP {error.status_code}"
                return AccessDenied(
                    f"Access to {what} denied ({reason}): the authorization's credentials may not "
                    f"{action} it, or have expired"
                )
            return StorageError(f"Could not {action} {what}: HTTP {error.status_code} {code or error.reason or ''}".rstrip())
        if isinstance(error, (ServiceRequestError, ServiceResponseError)):
            return StorageError(f"Could not {action} {what}: the Azure blob endpoint {self.account_url} is unreachable")
        if isinstance(error, AzureError):
            return StorageError(f"Could not {action} {what}: {type(error).__name__}")
        if isinstance(error, OSError):
            return StorageError(f"Could not {action} {what}: {error.strerror or error}")
        return None


def _blob_credential(credentials: Optional[AzureCredentials]) -> Any:
    """The azure.core credential for ``credentials``; invariant 3: nothing else, ever."""
    if credentials is not None and credentials.access_token:
        return FixedTokenCredential(credentials.access_token, credentials.expires_on)
    if credentials is not None and credentials.sas_token:
        return AzureSasCredential(credentials.sas_token.lstrip("?"))
    raise MissingCredentials("No Azure access token or SAS for this authorization; authorize again.")


def _code(error: HttpResponseError) -> str:
    """Azure's error code: from the x-ms-error-code header (HEAD responses have no body)."""
    code = getattr(error, "error_code", None)
    if not code and error.response is not None:
        code = error.response.headers.get("x-ms-error-code")
    return str(getattr(code, "value", code) or "")  # azure-storage-blob gives a StorageErrorCode enum


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

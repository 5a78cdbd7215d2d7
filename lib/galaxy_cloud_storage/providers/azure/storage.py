"""Azure Blob Storage through azure-storage-blob: a blob service client on the admin's account URL
with the user's short-lived credential, and the SDK's own chunked transfers.

cloudbridge's Azure provider is not used (README "How each cloud is reached"). As of 4.4.2 it
hard-codes ``https://<account>.blob.core.windows.net`` (invariant 4 (docs/design.rst) wants the admin's endpoint),
authenticates with a service-principal secret through Azure Resource Manager (it may even create a
storage account), reads unset settings from ``AZURE_*`` variables and ``~/.cloudbridge``
(invariant 3), and hands ``azure_access_token`` to the SDK as an account key or SAS, never as a
bearer token: using it took a subclass filled with placeholder subscription, tenant and resource
group values to reach the one object that does the work, azure-storage-blob's client.

Bytes move through azure-storage-blob's transfer code: it streams in bounded blocks with bounded
concurrency (invariant 8), and stages blocks that stay invisible until the final block list is
committed, so a failed upload leaves no object behind (invariant 7).
"""

import base64
import itertools
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Optional

from azure.core import MatchConditions
from azure.core.credentials import AccessToken, AccessTokenInfo, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobPrefix, BlobServiceClient, ContentSettings, ExponentialRetry

from ..cancellation import open_for_sending
from ..integrity import Checksum, Digests, MD5, ObjectChecksums, VerifyingReader
from ..storage import (
    AccessDenied,
    BucketInfo,
    check_not_stopped,
    IntegrityError,
    JsonCredentials,
    ListedObject,
    ListingPage,
    ObjectInfo,
    StorageBackend,
    StorageError,
)
from . import AzureCloud, AzureSettings

log = logging.getLogger(__name__)

# Uploads in the admin's block_size, downloads in ranges of chunk_size (AzureSettings), CONCURRENCY
# at a time: memory stays bounded whatever the blob's size (invariant 8).
CONCURRENCY = 4
STORAGE_SCOPE = "https://storage.azure.com/.default"
# azure-storage-blob retries 408, 500 (but 501 and 505), 502, 503 (Azure's throttling, ServerBusy),
# 504, resets and timeouts, settings.retries times, 1 + 2^n s apart (+-1 s), never a 4xx. With these
# timeouts a request fails within about (retries + 1) x (CONNECT_TIMEOUT + READ_TIMEOUT) + 2^retries s.
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 30
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
    """What a transfer job receives: a bearer token already exchanged by ``credentials.py`` (with its
    expiry), or a SAS token. Never the user's id_token nor a client secret."""

    access_token: Optional[str] = field(default=None, repr=False)
    expires_on: Optional[datetime] = None
    sas_token: Optional[str] = field(default=None, repr=False)

    def usable(self) -> bool:
        return bool(self.access_token or self.sas_token)

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


class AzureStorage(StorageBackend):
    plugin = AzureCloud
    credentials_type = AzureCredentials

    def __init__(self, settings: AzureSettings, credentials: AzureCredentials, config: dict) -> None:
        super().__init__(credentials)
        account = config.get("storage_account")
        if not account:
            raise StorageError("This Azure authorization names no storage account; update it.")
        self.credential = _blob_credential(credentials)
        # Invariant 4: the admin's endpoint pattern; the user's record only names the account.
        self.account_url = settings.blob_endpoint.format(account=account).rstrip("/")
        if credentials.access_token and not self.account_url.lower().startswith("https://"):
            # azure-core never sends a bearer token in clear text; say so in the admin's terms.
            raise StorageError(
                f"Azure access tokens need an https blob endpoint, not {self.account_url}: check the "
                "blob_endpoint setting of the Azure provider."
            )
        self.service = BlobServiceClient(
            account_url=self.account_url,
            credential=self.credential,
            connection_verify=settings.verify,
            connection_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            # The SDK's default waits 15 s (+-3) before its first retry; small and bounded instead.
            retry_policy=ExponentialRetry(
                initial_backoff=1, increment_base=2, retry_total=settings.retries, random_jitter_range=1
            ),
            max_block_size=settings.block_size,
            max_single_put_size=settings.block_size,
            max_single_get_size=settings.chunk_size,
            max_chunk_get_size=settings.chunk_size,
        )
        self.range_size = settings.chunk_size
        self.block_size = settings.block_size

    def _check_bucket(self, bucket: str) -> None:
        container = self.service.get_container_client(bucket)
        try:
            container.get_container_properties()
            return
        except HttpResponseError as e:
            if e.status_code != 403:
                raise
        # A container-scoped SAS may list blobs but never read container properties: listing one
        # blob tells "denied" from "allowed to list" (404 still means missing).
        next(container.list_blobs(results_per_page=1).by_page(), None)

    def _stat(self, bucket: str, key: str) -> Optional[ObjectInfo]:
        try:
            properties = self.service.get_blob_client(bucket, key).get_blob_properties()
        except ResourceNotFoundError as e:
            if _code(e) == "ContainerNotFound":
                raise
            return None  # a HEAD's 404 has no body: BlobNotFound, or a missing container
        return ObjectInfo(key=key, size=properties.size)

    def _list_sizes(self, bucket: str, prefix: str, limit: int) -> Iterator[tuple[str, int]]:
        blobs = self.service.get_container_client(bucket).list_blobs(name_starts_with=prefix or None)
        for blob in itertools.islice(blobs, limit):
            yield blob.name, blob.size

    def _list_buckets(self) -> list[BucketInfo]:
        # A container has a last-modified time but no creation time.
        return [BucketInfo(container.name) for container in self.service.list_containers()]

    def _list_page(
        self, bucket: str, prefix: str, delimiter: Optional[str], limit: int, continuation: Optional[str]
    ) -> ListingPage:
        container = self.service.get_container_client(bucket)
        # maxresults counts blobs and prefixes together; the continuation is Azure's NextMarker.
        if delimiter:
            listing = container.walk_blobs(name_starts_with=prefix or None, delimiter=delimiter, results_per_page=limit)
        else:
            listing = container.list_blobs(name_starts_with=prefix or None, results_per_page=limit)
        pages = listing.by_page(continuation_token=continuation)
        objects, folders = [], []
        for item in next(pages):  # walk_blobs's BlobPrefix items list nothing until iterated
            if isinstance(item, BlobPrefix):
                folders.append(item.name)
            else:
                objects.append(ListedObject(item.name, item.size, _aware(item.last_modified)))
        return ListingPage(objects, folders, pages.continuation_token or None)

    # -- downloads -------------------------------------------------------------------------------

    whole_object_algorithms = (MD5,)

    def _read_whole(self, bucket: str, key: str, write: Callable[[bytes], None]) -> ObjectChecksums:
        # Ranged GETs of max_chunk_get_size, one after the other. Each response carries the blob's
        # own MD5 (x-ms-blob-content-md5).
        with self._attempts(key) as attempts:
            downloader = self.service.get_blob_client(bucket, key).download_blob(
                max_concurrency=1, raw_request_hook=attempts.hook, retry_hook=self._retry_hook(key)
            )
            attempts.needed = max(1, math.ceil(downloader.size / self.range_size))
            checksums = blob_checksums(downloader.properties)
            for chunk in downloader.chunks():
                write(chunk)
        return checksums

    def _head(self, bucket: str, key: str) -> ObjectChecksums:
        with self._attempts(key) as attempts:
            return blob_checksums(
                self.service.get_blob_client(bucket, key).get_blob_properties(
                    raw_request_hook=attempts.hook, retry_hook=self._retry_hook(key)
                )
            )

    def _read_range(
        self, bucket: str, key: str, checksums: ObjectChecksums, start: int, end: int, write: Callable[[bytes], None]
    ) -> None:
        # If-Match the ETag measured: a blob replaced meanwhile is a 412, never mixed in. One range is
        # one request (range_size is max_single_get_size).
        with self._attempts(key) as attempts:
            downloader = self.service.get_blob_client(bucket, key).download_blob(
                offset=start,
                length=end - start + 1,
                etag=checksums.version,
                match_condition=MatchConditions.IfNotModified,
                max_concurrency=1,
                raw_request_hook=attempts.hook,
                retry_hook=self._retry_hook(key),
            )
            for chunk in downloader.chunks():
                write(chunk)

    @contextmanager
    def _attempts(self, key: str) -> Iterator["Attempts"]:
        """A read's attempts beyond the requests it needs count as ``key``'s retries, however it ends."""
        attempts = Attempts()
        try:
            yield attempts
        finally:
            self._count_retry(key, attempts.count - attempts.needed)

    # -- uploads ---------------------------------------------------------------------------------

    def _upload_algorithms(self, size: int) -> tuple[str, ...]:
        return (MD5,)

    def _upload(self, path: str, size: int, bucket: str, key: str, digests: Digests) -> None:
        """validate_content: each request's Content-MD5 (the blob's in one Put Blob, each block's
        when staged), which Azure verifies on receipt. The blob's own Content-MD5 is the first read's;
        Azure does not check it against the blocks, so the bytes are hashed again as the SDK reads
        them (in order, in one thread) and a mismatch stops the upload before its commit."""
        with open_for_sending(path, self.count_bytes) as fh:
            # Above max_single_put_size the SDK stages blocks of max_block_size, CONCURRENCY at a
            # time, then commits the block list: a failure before the commit leaves only
            # uncommitted blocks, which are never visible and which Azure discards (invariant 7).
            self.service.get_blob_client(bucket, key).upload_blob(
                VerifyingReader(fh, digests.sha256, size, f"The file sent to '{key}'"),
                length=size,
                overwrite=True,
                max_concurrency=CONCURRENCY,
                validate_content=True,
                content_settings=ContentSettings(content_md5=bytearray(digests.digest(MD5))),
                metadata={"sha256": digests.sha256},
                retry_hook=self._retry_hook(key),
                raw_request_hook=_no_commit_after_a_stop,
            )

    def _stored_checksums(self, bucket: str, key: str) -> ObjectChecksums:
        return self._head(bucket, key)

    def _delete(self, bucket: str, key: str) -> None:
        self.service.get_blob_client(bucket, key).delete_blob()

    def _retry_hook(self, key: str) -> Callable[..., None]:
        """azure-storage-blob calls it before each retry of a request (its retry_hook option)."""
        return lambda **kwargs: self._count_retry(key)

    def _storage_error(
        self, error: Exception, action: str, bucket: str, key: Optional[str], what: str
    ) -> Optional[StorageError]:
        if isinstance(error, ResourceModifiedError) or (
            isinstance(error, HttpResponseError) and error.status_code == 412
        ):
            return StorageError(f"Could not {action} {what}: it was replaced while being copied; try again")
        if isinstance(error, HttpResponseError) and (
            _code(error) in ("Md5Mismatch", "Crc64Mismatch") or "md5" in str(error.message or "").lower()
        ):  # (Azurite says InvalidOperation, "Provided contentMD5 doesn't match.")
            return IntegrityError(
                f"Azure refused {what}: the bytes it received do not match their MD5 ({_code(error)})"
            )
        if isinstance(error, ExpiredAccessToken):
            return AccessDenied(f"Access to {what} denied: {error}; start the transfer again to get a new one")
        if isinstance(error, HttpResponseError) and error.status_code is not None:
            code = _code(error)
            if bucket is not None and (code == "ContainerNotFound" or (error.status_code == 404 and key is None)):
                return self._missing_bucket(bucket)
            if error.status_code == 404:
                return self._missing_object(bucket, key)
            if error.status_code in (401, 403) or code in DENIED_CODES:
                reason = code or f"HTTP {error.status_code}"
                return AccessDenied(
                    f"Access to {what} denied ({reason}): the authorization's credentials may not "
                    f"{action} {self._it(bucket)}, or have expired"
                )
            return StorageError(
                f"Could not {action} {what}: HTTP {error.status_code} {code or error.reason or ''}".rstrip()
            )
        if isinstance(error, (ServiceRequestError, ServiceResponseError)):
            return StorageError(f"Could not {action} {what}: the Azure blob endpoint {self.account_url} is unreachable")
        if isinstance(error, AzureError):
            return StorageError(f"Could not {action} {what}: {type(error).__name__}")
        return None


def _no_commit_after_a_stop(request) -> None:
    """The SDK reads each block whole before staging it: a job stopped once every block was read
    would still commit them (test_unit_storage_faults). The commit raises the stop instead, and the
    staged blocks stay uncommitted, as on any failure."""
    if "comp=blocklist" in request.http_request.url:
        check_not_stopped()


class Attempts:
    """The calls of one read (azure-storage-blob's raw_request_hook sees each call's first attempt;
    its retry_hook, the attempts after it): its downloader asks a body that broke mid-way again by
    itself (3 times, 1 s apart), in a call of its own that the retry_hook does not report, so those
    retries are the read's calls beyond the requests it needs."""

    def __init__(self) -> None:
        self.count = 0
        self.needed = 1

    def hook(self, request) -> None:
        self.count += 1


def blob_checksums(properties) -> ObjectChecksums:
    """What a blob's properties (or a download's first response) say of its bytes."""
    md5 = properties.content_settings.content_md5
    checksums = []
    if md5:
        if isinstance(md5, str):  # some responses give it as base64 text
            md5 = base64.b64decode(md5)
        checksums.append(Checksum(MD5, bytes(md5), "Content-MD5"))
    checksums.append(Checksum.metadata_sha256((properties.metadata or {}).get("sha256"), "x-ms-meta-sha256"))
    found = tuple(checksum for checksum in checksums if checksum is not None)
    unverifiable = None if found else "the blob has no Content-MD5 (it went up in blocks without one)"
    return ObjectChecksums(properties.size, found, unverifiable, version=properties.etag)


def _blob_credential(credentials: AzureCredentials) -> Any:
    """The azure.core credential for ``credentials``; invariant 3: nothing else, ever."""
    if credentials.access_token:
        return FixedTokenCredential(credentials.access_token, credentials.expires_on)
    return AzureSasCredential(credentials.sas_token.lstrip("?"))


def _code(error: HttpResponseError) -> str:
    """Azure's error code: from the x-ms-error-code header (HEAD responses have no body)."""
    code = getattr(error, "error_code", None)
    if not code and error.response is not None:
        code = error.response.headers.get("x-ms-error-code")
    return str(getattr(code, "value", code) or "")  # azure-storage-blob gives a StorageErrorCode enum


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

"""Google Cloud Storage, through google-cloud-storage (not cloudbridge: README "How each cloud is
reached").

cloudbridge's GCP provider (4.4.2) stays out of this path: it brings nothing a transfer needs and three
things it must not have. It has no endpoint option (invariant 4 (docs/design.rst) needs the admin's), its
``upload_from_file`` is a single non-resumable request that held about 1.2 GB of memory for a
200 MB file (invariant 8), and ``iter_content`` makes one ranged GET per MiB. Building it would
also build clients for the Compute API this plugin never calls. google-cloud-storage, Google's own
SDK, takes the endpoint, does resumable uploads in chunks of a chosen size, streams ranged
downloads in a bounded thread pool with a CRC32C check, and retries with bounded
``google.api_core`` retry objects; the errors it raises carry the HTTP status, so "missing",
"denied" and "unreachable" can be told apart.

No default credentials, ever (invariant 3): the client is given an explicit credentials object
(the user's access token) and an explicit project, and the HTTP session is built here; so neither
google-auth's ``default()`` (GOOGLE_APPLICATION_CREDENTIALS, gcloud's files, the GCE metadata
server) nor the project from GOOGLE_CLOUD_PROJECT is ever consulted.
"""

import base64
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterator, Optional

import requests
import urllib3.exceptions
from google.api_core import exceptions as api_exceptions
from google.api_core.exceptions import RetryError
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption
from google.cloud.storage.retry import _should_retry
from google.oauth2.credentials import Credentials as AccessTokenCredentials

from ..cancellation import open_for_sending
from ..integrity import Checksum, CRC32C, Digests, MD5, ObjectChecksums
from ..storage import (
    AccessDenied,
    BucketInfo,
    IntegrityError,
    JsonCredentials,
    ListedObject,
    ListingPage,
    ObjectInfo,
    pump,
    StorageBackend,
    StorageError,
)
from . import GcpCloud, GcpSettings

log = logging.getLogger(__name__)

# Uploads go in the admin's chunk_size pieces (one resumable session, one chunk in memory at a time);
# downloads in ranges of it (StorageBackend's ranged read). Memory stays bounded whatever the
# object's size (invariant 8). google-cloud-storage's own predicate retries 408, 429, 500, 502,
# 503, 504, resets and timeouts (a download's body resumed from the byte reached), never another
# 4xx, with exponential backoff (RETRY_INITIAL s doubling to RETRY_MAXIMUM, with jitter) for at most
# the admin's retry_timeout per request: an unreachable endpoint fails after about that long.
CONCURRENCY = 4
REQUEST_TIMEOUT = (10, 30)  # (connect, read) seconds for each HTTP request
RANGE_CHUNK = 1024 * 1024  # read size of a ranged read's body
# What a body that broke mid-way raises through requests and urllib3.
BROKEN_BODY_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)
RETRY_INITIAL = 1.0
RETRY_MAXIMUM = 16.0


@dataclass(frozen=True)
class GcpCredentials(JsonCredentials):
    """What a transfer job receives: an OAuth 2.0 access token, already exchanged, and when it
    expires. Never the id_token nor a service-account key."""

    access_token: str = field(repr=False)
    expiry: datetime | None = None

    def usable(self) -> bool:
        return bool(self.access_token)


def authorized_session(credentials: GcpCredentials, verify) -> AuthorizedSession:
    """The HTTP session every request of one backend goes through: the user's bearer token, the
    admin's TLS trust, a connection pool sized for the parallel ranges."""
    # No expiry is given to google-auth: with one, it would try to "refresh" a token it cannot
    # refresh (there is no refresh token) minutes before the end; the server is the judge.
    token = AccessTokenCredentials(token=credentials.access_token)
    # refresh_status_codes=(): a 401 is the answer (the token expired or was revoked), not a
    # reason to try a refresh that cannot succeed.
    session = AuthorizedSession(token, refresh_status_codes=())
    session.verify = verify
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4 * CONCURRENCY)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class GcsStorage(StorageBackend):
    plugin = GcpCloud
    credentials_type = GcpCredentials

    def __init__(self, settings: GcpSettings, credentials: GcpCredentials, config: dict) -> None:
        super().__init__(credentials)
        # Invariant 4: the admin's endpoint, never the user's.
        self.endpoint_url = str(settings.storage_endpoint).rstrip("/")
        self.chunk_size = self.range_size = settings.chunk_size
        self.retry_timeout = settings.retry_timeout
        self.retry = self._retry_for(None)
        self.session = authorized_session(credentials, settings.verify)
        self.client = storage.Client(
            # An explicit project (None: no project) keeps GOOGLE_CLOUD_PROJECT out; explicit
            # credentials and session keep google.auth.default() out. ``_http`` is Client's
            # documented (if underscored) argument for the session: there is no public one, and
            # ours carries the admin's CA bundle and a pool sized for the parallel ranges.
            project=config.get("project"),
            credentials=self.session.credentials,
            _http=self.session,
            # api_endpoint also wins over STORAGE_EMULATOR_HOST and API_ENDPOINT_OVERRIDE.
            client_options={"api_endpoint": self.endpoint_url},
        )
        # google-cloud-storage 3.x fills tracing attributes from a bucket-metadata cache that, on
        # first use of a bucket, GETs the bucket in a background thread: one more request per
        # bucket, made with the user's token after the call returned, for a permission
        # (storage.buckets.get) the object roles do not grant. Traces are not worth that here.
        if getattr(self.client, "_bucket_metadata_cache", None) is not None:
            self.client._bucket_metadata_cache = None

    def _check_bucket(self, bucket: str) -> None:
        # Listing one object, not GET on the bucket: storage.buckets.get is not part of the object
        # roles (roles/storage.objectViewer, objectAdmin) a user is usually granted on a bucket.
        next(iter(self.client.list_blobs(bucket, max_results=1, retry=self.retry, timeout=REQUEST_TIMEOUT).pages), None)

    def _stat(self, bucket: str, key: str) -> ObjectInfo | None:
        blob = self.client.bucket(bucket).get_blob(key, retry=self.retry, timeout=REQUEST_TIMEOUT)
        return None if blob is None else ObjectInfo(key=key, size=blob.size or 0)

    def _list_sizes(self, bucket: str, prefix: str, limit: int) -> Iterator[tuple[str, int]]:
        blobs = self.client.list_blobs(
            bucket, prefix=prefix or None, max_results=limit, page_size=1000,
            fields="items(name,size),nextPageToken", retry=self.retry, timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        for blob in blobs:
            yield blob.name, blob.size or 0

    def _list_buckets(self) -> list[BucketInfo]:
        # The buckets of the record's project (storage.buckets.list on it, which object roles lack).
        buckets = self.client.list_buckets(
            fields="items(name,timeCreated),nextPageToken", retry=self.retry, timeout=REQUEST_TIMEOUT
        )
        return [BucketInfo(bucket.name, bucket.time_created) for bucket in buckets]

    def _list_page(
        self, bucket: str, prefix: str, delimiter: str | None, limit: int, continuation: str | None
    ) -> ListingPage:
        # maxResults counts items and prefixes together; the continuation is GCS's pageToken.
        blobs = self.client.list_blobs(
            bucket, prefix=prefix or None, delimiter=delimiter, page_size=limit, page_token=continuation,
            fields="items(name,size,updated),prefixes,nextPageToken", retry=self.retry, timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        page = next(blobs.pages)
        objects = [ListedObject(blob.name, blob.size or 0, blob.updated) for blob in page]
        return ListingPage(objects, list(page.prefixes), blobs.next_page_token or None)

    # -- downloads -------------------------------------------------------------------------------

    whole_object_algorithms = (CRC32C, MD5)

    def _read_whole(self, bucket: str, key: str, write: Callable[[bytes], None]) -> ObjectChecksums:
        """One GET (one version, whole); its x-goog-hash gives the object's CRC32C and MD5, which
        the library reads into the blob. The stored bytes, as S3 gives them: no decompressive
        transcoding of gzip objects (raw_download)."""
        blob = self.client.bucket(bucket).blob(key)
        blob.download_to_file(
            _Sink(write), raw_download=True, checksum=None, retry=self._retry_for(key), timeout=REQUEST_TIMEOUT
        )
        return object_checksums(blob, size=None)

    def _head(self, bucket: str, key: str) -> ObjectChecksums:
        blob = self.client.bucket(bucket).get_blob(key, retry=self._retry_for(key), timeout=REQUEST_TIMEOUT)
        if blob is None:
            raise api_exceptions.NotFound(f"{key} not found")
        return object_checksums(blob, size=blob.size or 0)

    def _read_range(
        self, bucket: str, key: str, checksums: ObjectChecksums, start: int, end: int, write: Callable[[bytes], None]
    ) -> None:
        """One GET of the JSON API's media URL through the backend's authorized session, with the
        library's own retry of the request, its body read 1 MiB at a time. Not the library's
        download, which reads a body 8 KiB at a time (its _media module's constant): 512 MiB in 16
        MiB ranges took 1.9-2.6 s of CPU through it and 0.9-1.2 s this way, on fake-gcs-server here,
        where the CPU, not the network, sets the pace. The generation measured is in the URL and
        its precondition: a replaced object is a 404 or a 412, never mixed in (fake-gcs-server
        honours only the first). The stored bytes, as S3 gives them (Accept-Encoding: gzip)."""
        url = f"{self.endpoint_url}/download/storage/v1{self.client.bucket(bucket).blob(key).path}"
        params = {"alt": "media", "generation": checksums.version, "ifGenerationMatch": checksums.version}
        headers = {"Range": f"bytes={start}-{end}", "Accept-Encoding": "gzip"}

        def request() -> requests.Response:
            response = self.session.get(url, params=params, headers=headers, stream=True, timeout=REQUEST_TIMEOUT)
            if response.status_code >= 400:
                error = api_exceptions.from_http_response(response)
                response.close()
                raise error
            return response

        try:
            response = self._retry_for(key)(request)()
        except api_exceptions.NotFound:
            raise api_exceptions.PreconditionFailed(f"generation {checksums.version} of {key} is gone") from None
        try:
            pump(response.raw.stream(RANGE_CHUNK, decode_content=False), write, broken=BROKEN_BODY_ERRORS)
        finally:
            response.close()

    # -- uploads ---------------------------------------------------------------------------------

    def _upload_algorithms(self, size: int) -> tuple[str, ...]:
        return (CRC32C, MD5)

    def _upload(self, path: str, size: int, bucket: str, key: str, digests: Digests) -> None:
        """A resumable upload in chunk_size pieces (objects up to 8 MiB go in one multipart
        request), whose object resource declares the file's CRC32C and MD5: GCS verifies them when
        the upload completes and refuses an object that does not match. The object appears only
        then: an upload that fails before leaves no object, only an unfinished session that GCS
        drops after a week (invariant 7). The library also compares the CRC32C it computed from
        what it sent with the stored one, and deletes the object on a mismatch."""
        blob = self.client.bucket(bucket).blob(key, chunk_size=self.chunk_size)
        blob.crc32c = base64.b64encode(digests.digest(CRC32C)).decode()
        blob.md5_hash = base64.b64encode(digests.digest(MD5)).decode()
        blob.metadata = {"sha256": digests.sha256}
        with open_for_sending(path, self.count_bytes) as source:
            blob.upload_from_file(
                source, size=size, checksum="crc32c", retry=self._retry_for(key), timeout=REQUEST_TIMEOUT
            )

    def _stored_checksums(self, bucket: str, key: str) -> ObjectChecksums:
        return self._head(bucket, key)

    def _delete(self, bucket: str, key: str) -> None:
        self.client.bucket(bucket).delete_blob(key, retry=self.retry, timeout=REQUEST_TIMEOUT)

    def _retry_for(self, key: Optional[str]) -> Retry:
        """google.api_core's Retry with google-cloud-storage's own predicate (the one its
        DEFAULT_RETRY takes; the library gives it no public name), bounded by the admin's
        retry_timeout, counting each retry of ``key``'s requests."""
        return Retry(
            predicate=_should_retry,
            initial=RETRY_INITIAL,
            maximum=RETRY_MAXIMUM,
            multiplier=2.0,
            timeout=self.retry_timeout,
            on_error=lambda error: self._count_retry(key),
        )

    # -- errors -------------------------------------------------------------------------------

    def _storage_error(
        self, error: Exception, action: str, bucket: str, key: str | None, what: str
    ) -> StorageError | None:
        if isinstance(error, RetryError) and error.cause is not None:
            error = error.cause  # retries ran out: say why the last attempt failed
        if isinstance(error, api_exceptions.NotFound):
            # GCS's 404 body does not say whether the bucket or the object is missing.
            if bucket is None:
                return StorageError(f"Could not {action} {what}: the project was not found")
            if key is None or not self._bucket_exists(bucket):
                return self._missing_bucket(bucket)
            return self._missing_object(bucket, key)
        if isinstance(error, api_exceptions.Unauthorized):
            return AccessDenied(
                f"Access to {what} denied (HTTP 401): the authorization's Google Cloud access token "
                "has expired or was revoked; retry, or authorize again"
            )
        if isinstance(error, api_exceptions.Forbidden):
            granted_on = "project" if bucket is None else "bucket"  # the account's buckets are the project's
            return AccessDenied(
                f"Access to {what} denied (HTTP 403): the authorization's Google Cloud identity may "
                f"not {action} {self._it(bucket)}; check its IAM roles on the {granted_on}"
            )
        # 412: a range of another generation than the one measured; 416: a range past its end.
        if isinstance(error, (api_exceptions.PreconditionFailed, api_exceptions.RequestRangeNotSatisfiable)):
            return StorageError(f"Could not {action} {what}: it was replaced while being copied; try again")
        if isinstance(error, DataCorruption):
            return IntegrityError(f"Could not {action} {what}: the bytes stored do not match the file's CRC32C")
        if isinstance(error, api_exceptions.BadRequest) and any(
            word in _server_message(error).lower() for word in ("crc32c", "md5")
        ):
            return IntegrityError(f"GCS refused {what}: {_server_message(error)}")
        if isinstance(error, api_exceptions.GoogleAPICallError):
            return StorageError(f"Could not {action} {what}: HTTP {error.code} {_server_message(error)}")
        if isinstance(error, (requests.ConnectionError, requests.Timeout, auth_exceptions.TransportError)):
            return StorageError(
                f"Could not {action} {what}: the Google Cloud Storage endpoint {self.endpoint_url} is unreachable"
            )
        if isinstance(error, RetryError):
            return StorageError(
                f"Could not {action} {what}: the Google Cloud Storage endpoint {self.endpoint_url} "
                "did not answer in time"
            )
        if isinstance(error, auth_exceptions.GoogleAuthError):
            return AccessDenied(
                f"Access to {what} denied: the authorization's Google Cloud credentials are not usable; authorize again"
            )
        if isinstance(error, ValueError) and action == "upload":  # the file got shorter while being sent
            return StorageError(f"Could not {action} {what}: the file changed while it was being sent")
        if isinstance(error, ValueError):
            return StorageError(f"Could not {action} {what}: {error}")
        return None

    def _bucket_exists(self, bucket: str) -> bool:
        try:
            next(
                iter(self.client.list_blobs(bucket, max_results=1, retry=self.retry, timeout=REQUEST_TIMEOUT).pages),
                None,
            )
        except api_exceptions.NotFound:
            return False
        except Exception:
            pass  # cannot tell: do not claim the bucket is missing
        return True


class _Sink:
    """What google-cloud-storage writes a download into: ``write`` only (the bytes go on to the
    ranged read's writer, in order)."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.write = write


def object_checksums(blob, size: Optional[int]) -> ObjectChecksums:
    """What GCS says of an object's bytes: its CRC32C (always, composed objects included), its MD5
    (not for composed objects), its ``sha256`` metadata where a reload read it."""
    checksums = (
        Checksum.from_base64(CRC32C, blob.crc32c, "GCS crc32c") if blob.crc32c else None,
        Checksum.from_base64(MD5, blob.md5_hash, "GCS md5Hash") if blob.md5_hash else None,
        Checksum.metadata_sha256((blob.metadata or {}).get("sha256"), "x-goog-meta-sha256"),
    )
    found = tuple(checksum for checksum in checksums if checksum is not None)
    unverifiable = None if found else "GCS gave no crc32c or md5Hash for it"
    generation = int(blob.generation) if blob.generation else None
    return ObjectChecksums(size, found, unverifiable, version=generation)


def _server_message(error: api_exceptions.GoogleAPICallError) -> str:
    """The server's own words, without the request's URL that ``error.message`` starts with (a
    resumable upload's URL carries its session id, which lets anyone holding it write)."""
    for item in error.errors or []:
        if isinstance(item, dict) and item.get("message"):
            return item["message"]
    return error.reason or ""

"""Amazon S3 and S3-compatible endpoints, through boto3: an S3 client on an isolated session, and
s3transfer for the objects.

cloudbridge's AWS provider is not used (measured with cloudbridge 4.4.2, README "How each cloud is
reached"). Its object API cannot give a user a true answer or bounded
transfers: ``buckets.get`` returns a bucket even on 403, ``objects.get`` returns None on any error
(missing, denied and unreachable all look alike), ``objects.list`` walks the whole bucket
client-side for each page, and its multipart settings are process-global, shared by every user's
transfer. What was left of it, the session, cost more than it gave: it fills unset keys from
/etc/cloudbridge.ini and ~/.cloudbridge (a stray aws_session_token there would go out with the
user's keys), and its __init__ builds every service with a boto3 EC2 resource (about 75 ms per
request, a sixth of what a get request may take, for APIs the plugin never calls).
"""

import base64
import functools
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator, Optional

import boto3
import botocore.handlers
import botocore.loaders
import botocore.session
import urllib3.exceptions
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    FlexibleChecksumError,
)

from ..cancellation import s3transfer_progress
from ..integrity import Checksum, CRC32, CRC32C, CRC64NVME, Digests, MD5, ObjectChecksums, SHA1, SHA256
from ..storage import (
    AccessDenied,
    BrokenBody,
    BucketInfo,
    check_not_stopped,
    IntegrityError,
    JsonCredentials,
    ListedObject,
    ListingPage,
    ObjectInfo,
    pump,
    StorageBackend,
    StorageError,
)
from . import AwsCloud, AwsSettings

log = logging.getLogger(__name__)

# Objects above the admin's part_size move in parts of it, CONCURRENCY at a time: memory stays
# bounded by roughly CONCURRENCY parts whatever the object's size (invariant 8, docs/design.rst).
CONCURRENCY = 4
# The statuses botocore's standard retry mode asks again (5xx and throttling), besides connection errors.
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_REGION = "us-east-1"
# botocore's 'standard' mode retries throttling (SlowDown, 429), 500/502/503/504, resets and timeouts
# with exponential backoff and jitter (at most 20 s a wait), never a 4xx that is not throttling.
# With these timeouts a request fails within about MAX_ATTEMPTS x (CONNECT_TIMEOUT + READ_TIMEOUT)
# + 40 s of backoff, and at once where nothing listens (refused connections are quick).
MAX_ATTEMPTS = 5
RETRIES = {"mode": "standard", "max_attempts": MAX_ATTEMPTS}
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 30  # seconds without a byte from S3 before a request, or a body, counts as failed
# The whole-object checksums a response may carry, by their field names (a multipart upload's
# COMPOSITE ones, "...-3", are of its parts, not of the object: Checksum.from_base64 skips them).
CHECKSUM_FIELDS = {
    "ChecksumCRC64NVME": CRC64NVME,
    "ChecksumCRC32C": CRC32C,
    "ChecksumCRC32": CRC32,
    "ChecksumSHA256": SHA256,
    "ChecksumSHA1": SHA1,
}
# Read size of a small object's one GET (AwsStorage._download_whole).
WHOLE_OBJECT_CHUNK = 1024 * 1024
# HTTP error codes that mean "these credentials may not do that" (some come back as 400, not 403).
DENIED_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "TokenRefreshRequired",
}


@dataclass(frozen=True)
class AwsCredentials(JsonCredentials):
    """One user's keys, usually temporary ones from STS; the repr never shows the secret parts."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: Optional[str] = field(default=None, repr=False)
    expiration: Optional[datetime] = None

    def usable(self) -> bool:
        return bool(self.access_key_id and self.secret_access_key)


# Parsing botocore's service models costs 0.3-0.5 s per session; one loader for the process keeps
# its parsed models, and a request builds a backend in a few milliseconds. The loader holds no
# credentials.
_SHARED_LOADER = botocore.loaders.create_loader()
_LOADER_LOCK = threading.Lock()


def _isolated_botocore_session() -> botocore.session.Session:
    """A botocore session that reads no environment variable and no file (invariants 3 and 4).

    By default botocore reads AWS_PROFILE, ~/.aws/config (endpoint_url, retries, ca_bundle, ...) and
    AWS_ENDPOINT_URL_S3, and fails outright when AWS_PROFILE names a missing profile. Every session
    variable is redefined here with no environment variable and no config-file key, both files are
    os.devnull, and configured endpoint URLs are ignored. Credentials are always given explicitly, so
    botocore never builds its credential chain (environment, ~/.aws, instance metadata) at all.
    """
    pinned = {"config_file": os.devnull, "credentials_file": os.devnull, "ignore_configured_endpoint_urls": True}
    session_vars = {
        name: (None, None, pinned.get(name, default), convert)
        for name, (_, _, default, convert) in botocore.session.Session.SESSION_VARIABLES.items()
    }
    session = botocore.session.Session(session_vars=session_vars)
    session.register_component("data_loader", _SHARED_LOADER)
    return session


@functools.cache
def partition_regions(region: str) -> tuple[str, ...]:
    """The S3 regions of ``region``'s AWS partition (commercial, China, GovCloud, ...), from
    botocore's endpoint data; empty for a region botocore does not know."""
    session = _isolated_botocore_session()
    try:
        partition = session.get_partition_for_region(region)
    except Exception:  # botocore raises UnknownRegionError, or ValueError for odd names
        return ()
    return tuple(session.get_available_regions("s3", partition_name=partition))


def region_problem(settings: AwsSettings, region: Optional[str]) -> Optional[str]:
    """Invariant 4: a record's region picks S3's host where the admin set no endpoint, so it must be
    a region of the admin's own partition (the admin's region's), never another partition's or an
    unknown one."""
    admin_region = settings.s3_region or DEFAULT_REGION
    if region is None or region == admin_region:
        return None
    allowed = partition_regions(admin_region)
    if region not in allowed:
        return f"'{region}' is not a region of this Galaxy's AWS partition (its region is {admin_region})"
    return None


class AwsStorage(StorageBackend):
    plugin = AwsCloud
    credentials_type = AwsCredentials

    def __init__(self, settings: AwsSettings, credentials: AwsCredentials, config: Optional[dict] = None) -> None:
        """``config``: the authorization record's public part; its ``region`` wins over the admin's."""
        super().__init__(credentials)
        # Invariant 4: the endpoint is the admin's (None: AWS itself), never the user's.
        self.endpoint_url = str(settings.s3_endpoint_url).rstrip("/") if settings.s3_endpoint_url else None
        if problem := region_problem(settings, (config or {}).get("region")):
            raise AccessDenied(f"{problem}; update the authorization's region")
        self.region = (config or {}).get("region") or settings.s3_region or DEFAULT_REGION
        self.session = boto3.session.Session(
            botocore_session=_isolated_botocore_session(),
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            region_name=self.region,
        )
        with _LOADER_LOCK:  # each boto3 Session appends its data folder to the shared loader's paths
            paths = _SHARED_LOADER.search_paths
            paths[:] = list(dict.fromkeys(paths))
        client_config = Config(
            retries=RETRIES,
            signature_version="s3v4",
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            # Several objects may move at once through this client, each CONCURRENCY parts at a time.
            max_pool_connections=8 * CONCURRENCY,
            s3={
                # S3-compatible servers rarely have wildcard DNS for virtual-hosted buckets.
                "addressing_style": "path" if self.endpoint_url else "auto",
                # Invariant 4: a bucket named by an ARN (refused by S3NameRules before any call) must
                # not pick the host or region either, should one get this far.
                "use_arn_region": False,
                "s3_disable_multiregion_access_points": True,
                "use_accelerate_endpoint": False,
            },
        )
        self.client = self.session.client(
            "s3", region_name=self.region, endpoint_url=self.endpoint_url, config=client_config
        )
        self._count_retries_of(self.client)
        self._never_retry_or_complete_after_a_stop(self.client)
        # No "Expect: 100-continue" on uploads. botocore waits for the 100 and then reads the lines
        # after it until a blank one (awsrequest._consume_headers), which at the end of the stream
        # loops forever: a server that dies right after its 100 Continue left a job busy and hung
        # (test_unit_storage_faults: the relay cut mid-upload). Without it, a part the server
        # refuses costs its bytes once.
        self.client.meta.events.unregister("before-call.s3", botocore.handlers.add_expect_header)
        self.range_size = settings.part_size
        self.transfer_config = TransferConfig(
            multipart_threshold=settings.part_size,
            multipart_chunksize=settings.part_size,
            max_concurrency=CONCURRENCY,
            use_threads=True,
            preferred_transfer_client="classic",  # not the CRT client, which has its own settings
        )

    def _check_bucket(self, bucket: str) -> None:
        self.client.head_bucket(Bucket=bucket)

    def _stat(self, bucket: str, key: str) -> Optional[ObjectInfo]:
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if _status(e) == 404:  # (AWS answers 403 instead when s3:ListBucket is not allowed)
                return None
            raise
        return ObjectInfo(key=key, size=head["ContentLength"])

    def _list_sizes(self, bucket: str, prefix: str, limit: int) -> Iterator[tuple[str, int]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"MaxItems": limit, "PageSize": 1000}
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"], item["Size"]

    def _list_buckets(self) -> list[BucketInfo]:
        buckets = self.client.list_buckets().get("Buckets", [])
        return [BucketInfo(item["Name"], _utc(item.get("CreationDate"))) for item in buckets]

    def _list_page(
        self, bucket: str, prefix: str, delimiter: Optional[str], limit: int, continuation: Optional[str]
    ) -> ListingPage:
        # MaxKeys counts keys and common prefixes together. botocore asks for URL-encoded keys and
        # decodes them, so that keys holding what XML cannot carry come back as they are.
        arguments = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": limit}
        if delimiter:
            arguments["Delimiter"] = delimiter
        if continuation:
            arguments["ContinuationToken"] = continuation
        page = self.client.list_objects_v2(**arguments)
        return ListingPage(
            objects=[ListedObject(o["Key"], o["Size"], _utc(o.get("LastModified"))) for o in page.get("Contents", [])],
            folders=[p["Prefix"] for p in page.get("CommonPrefixes", [])],
            continuation=page.get("NextContinuationToken") if page.get("IsTruncated") else None,
        )

    # -- downloads: what S3 says of an object, and its bytes -----------------------------------

    whole_object_algorithms = (MD5, CRC64NVME, CRC32C, CRC32, SHA1)

    def _read_whole(self, bucket: str, key: str, write: Callable[[bytes], None]) -> ObjectChecksums:
        """One GET, streamed. s3transfer's download_file costs a HEAD and a transfer manager
        (threads, an IO queue) per object, which for small objects is most of the time: 1,000
        objects of 16 KiB, 4 at a time on moto, took 11.4 s through it and 5.9 s this way."""
        response = self.client.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        _stream_body(response, write)
        return object_checksums(response)

    def _head(self, bucket: str, key: str) -> ObjectChecksums:
        return object_checksums(self.client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED"))

    def _read_range(
        self, bucket: str, key: str, checksums: ObjectChecksums, start: int, end: int, write: Callable[[bytes], None]
    ) -> None:
        # IfMatch: a range of another version of the object is a 412, never mixed in.
        response = self.client.get_object(
            Bucket=bucket, Key=key, Range=f"bytes={start}-{end}", IfMatch=checksums.version
        )
        _stream_body(response, write)

    # -- uploads -------------------------------------------------------------------------------

    def _upload_algorithms(self, size: int) -> tuple[str, ...]:
        # One part: its SHA-256 is declared, and its MD5 is what S3 makes its ETag; several parts:
        # the CRC32 of the whole object (botocore computes each part's CRC32 itself; CRC32C and
        # CRC64NVME it computes only with awscrt, see integrity._Crc64Nvme).
        return (MD5,) if self._one_part(size) else (CRC32,)

    def _one_part(self, size: int) -> bool:
        return size < self.transfer_config.multipart_threshold

    def _upload(self, path: str, size: int, bucket: str, key: str, digests: Digests) -> None:
        """S3 verifies the declared checksum on receipt: one part's SHA-256, or a multipart
        upload's CRC32 of the whole object (s3transfer makes that a FULL_OBJECT checksum, each
        part carrying its own CRC32). On any failure s3transfer aborts the multipart upload, so no
        hidden parts are left."""
        extra = {"Metadata": {"sha256": digests.sha256}}
        if self._one_part(size):
            # The algorithm too, so that S3 (and moto) keeps the checksum with the object.
            extra.update(ChecksumAlgorithm="SHA256", ChecksumSHA256=_base64(digests.digest(SHA256)))
        else:
            extra["ChecksumCRC32"] = _base64(digests.digest(CRC32))
        self.client.upload_file(
            path,
            bucket,
            key,
            ExtraArgs=extra,
            Config=self.transfer_config,
            Callback=s3transfer_progress(self.count_bytes),
        )

    def _stored_checksums(self, bucket: str, key: str) -> ObjectChecksums:
        return self._head(bucket, key)

    def _delete(self, bucket: str, key: str) -> None:
        self.client.delete_object(Bucket=bucket, Key=key)

    # -- retries ---------------------------------------------------------------------------------

    @staticmethod
    def _never_retry_or_complete_after_a_stop(client) -> None:
        """Once the job is stopped, no call is asked again. botocore wraps whatever a request's
        sending raises in HTTPClientError, which it retries: the stop raised by a part's body was
        retried with backoff, 5 attempts per part, and a scancel'd send took 20 s to unwind instead
        of 3 (test_unit_storage_faults). Raised here, the stop ends the call at once. Calls that
        succeed or fail for good are left alone: cleanup calls (the multipart upload's abort) still
        go, once."""

        def stop_retrying(response=None, caught_exception=None, **kwargs):
            if caught_exception is not None or (response is not None and response[0].status_code in RETRIED_STATUSES):
                check_not_stopped()

        client.meta.events.register("needs-retry.s3", stop_retrying)
        # Nor is a multipart upload completed: its parts may all have been read before the stop.
        client.meta.events.register("before-call.s3.CompleteMultipartUpload", lambda **kwargs: check_not_stopped())

    def _count_retries_of(self, client) -> None:
        """botocore creates a request for each attempt of a call: the attempts after a call's first,
        by the call's Key, are its retries (s3transfer's part uploads included)."""

        def start(params, context, **kwargs):
            context["cloud_storage_key"] = params.get("Key")
            context["cloud_storage_attempts"] = 0

        def attempt(request, **kwargs):
            context = request.context
            context["cloud_storage_attempts"] = context.get("cloud_storage_attempts", 0) + 1
            if context["cloud_storage_attempts"] > 1:
                self._count_retry(context.get("cloud_storage_key"))

        client.meta.events.register("before-parameter-build.s3", start)
        client.meta.events.register("request-created.s3", attempt)

    def _storage_error(
        self, error: Exception, action: str, bucket: str, key: Optional[str], what: str
    ) -> Optional[StorageError]:
        # boto3 wraps client errors of uploads, and download retries, in exceptions of its own.
        if isinstance(error, S3UploadFailedError) and isinstance(error.__context__, ClientError):
            error = error.__context__
        if isinstance(error, RetriesExceededError):
            error = error.last_exception
        if isinstance(error, FlexibleChecksumError):  # botocore checks a whole GET's checksum too
            return IntegrityError(
                f"{what.capitalize()} does not match its S3 checksum ({error}); nothing of it was kept"
            )
        if isinstance(error, BrokenBody):
            return StorageError(f"Could not {action} {what}: the connection broke mid-way, again and again ({error})")
        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message") or code
            if _status(error) == 412 or code == "PreconditionFailed":
                return StorageError(f"Could not {action} {what}: it was replaced while being copied; try again")
            if code in ("BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "InvalidRequest") and (
                "checksum" in message.lower() or "digest" in message.lower()
            ):
                return IntegrityError(
                    f"S3 refused {what}: the bytes it received do not match their checksum ({message})"
                )
            if bucket is not None and (code == "NoSuchBucket" or (_status(error) == 404 and key is None)):
                return self._missing_bucket(bucket)
            if _status(error) == 404 or code == "NoSuchKey":
                return self._missing_object(bucket, key)
            if _status(error) in (401, 403) or code in DENIED_CODES:
                # A HEAD's error has no body: its code is only the HTTP status.
                reason = code if code and not code.isdigit() else f"HTTP {_status(error)}"
                return AccessDenied(
                    f"Access to {what} denied ({reason}): the authorization's credentials may not "
                    f"{action} {self._it(bucket)}, or have expired"
                )
            return StorageError(f"Could not {action} {what}: {code} {message}")
        if isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
            return StorageError(
                f"Could not {action} {what}: the S3 endpoint {self.client.meta.endpoint_url} is unreachable"
            )
        if isinstance(error, BotoCoreError):
            return StorageError(f"Could not {action} {what}: {error}")
        return None


def object_checksums(response: dict) -> ObjectChecksums:
    """What a HEAD's or a whole GET's answer says of an object's bytes."""
    checksums = []
    etag = (response.get("ETag") or "").strip('"')
    # A multipart object's checksum is of its parts (COMPOSITE) unless S3 says FULL_OBJECT. Stores
    # that do not say (moto's HEAD, older S3-compatible ones) give a composite value without its
    # "-N": it counts for a single-part object only, never as a mismatch.
    kind = response.get("ChecksumType")
    if kind == "FULL_OBJECT" or (kind is None and "-" not in etag):
        for name, algorithm in CHECKSUM_FIELDS.items():
            if response.get(name):
                checksums.append(Checksum.from_base64(algorithm, response[name], f"S3 {name}"))
    # A single part's ETag is its MD5, unless SSE-KMS or SSE-C encrypted it.
    encrypted = response.get("ServerSideEncryption") in ("aws:kms", "aws:kms:dsse") or response.get(
        "SSECustomerAlgorithm"
    )
    if len(etag) == 32 and not encrypted:
        checksums.append(Checksum.from_hex(MD5, etag, "S3 ETag of an object sent in one part"))
    checksums.append(Checksum.metadata_sha256((response.get("Metadata") or {}).get("sha256"), "x-amz-meta-sha256"))
    found = tuple(checksum for checksum in checksums if checksum is not None)
    unverifiable = None
    if not found:
        unverifiable = (
            "S3 keeps no whole-object checksum of it (a multipart upload without full-object checksums"
            + (", encrypted with SSE-KMS or SSE-C" if encrypted else "")
            + ")"
        )
    return ObjectChecksums(response.get("ContentLength"), found, unverifiable, version=response.get("ETag"))


def _stream_body(response: dict, write: Callable[[bytes], None]) -> None:
    """A GET's body through ``write``; a body that breaks mid-way is BrokenBody (botocore retries a
    request until its response starts, never its body)."""
    body = response["Body"]
    try:
        pump(
            body.iter_chunks(WHOLE_OBJECT_CHUNK),
            write,
            broken=(BotoCoreError, urllib3.exceptions.HTTPError, OSError),
            final=(FlexibleChecksumError,),
        )
    finally:
        body.close()


def _base64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _utc(moment: Optional[datetime]) -> Optional[datetime]:
    return moment.astimezone(timezone.utc) if moment is not None else None


def _status(error: ClientError) -> int:
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)

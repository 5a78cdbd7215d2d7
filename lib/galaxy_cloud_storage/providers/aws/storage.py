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

import functools
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator, Optional

import boto3
import botocore.loaders
import botocore.session
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError

from ..cancellation import s3transfer_progress
from ..storage import (
    AccessDenied,
    BucketInfo,
    JsonCredentials,
    ListedObject,
    ListingPage,
    ObjectInfo,
    StorageBackend,
    StorageError,
)
from . import AwsCloud, AwsSettings

log = logging.getLogger(__name__)

# Objects above the admin's part_size move in parts of it, CONCURRENCY at a time: memory stays
# bounded by roughly CONCURRENCY parts whatever the object's size (invariant 8, docs/design.rst).
CONCURRENCY = 4
DEFAULT_REGION = "us-east-1"
# botocore's 'standard' mode retries throttling, 5xx and connection errors with backoff.
RETRIES = {"mode": "standard", "max_attempts": 4}
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
            connect_timeout=10,
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

    def _download_into(self, bucket: str, key: str, partial: str, size_hint: Optional[int]) -> int:
        if size_hint is not None and size_hint < self.transfer_config.multipart_threshold:
            return self._download_whole(bucket, key, partial)
        # s3transfer writes a temporary file beside ``partial`` and renames it when complete.
        self.client.download_file(bucket, key, partial, Config=self.transfer_config, Callback=s3transfer_progress)
        return os.path.getsize(partial)

    def _download_whole(self, bucket: str, key: str, partial: str) -> int:
        """One GET streamed into ``partial``, for an object listed below the part size. s3transfer's
        download_file costs a HEAD and a transfer manager (threads, an IO queue) per object, which
        for small objects is most of the time: 1,000 objects of 16 KiB, 4 at a time on moto, took
        11.4 s through it and 5.9 s this way. Should the object have grown since it was listed, it
        still comes whole, in one stream."""
        response = self.client.get_object(Bucket=bucket, Key=key)
        chunks = response["Body"].iter_chunks(WHOLE_OBJECT_CHUNK)
        return self._write_stream(chunks, partial, response["ContentLength"], bucket, key)

    def _upload(self, path: str, size: int, bucket: str, key: str) -> None:
        # On any failure s3transfer aborts the multipart upload, so no hidden parts are left.
        self.client.upload_file(path, bucket, key, Config=self.transfer_config, Callback=s3transfer_progress)

    def _storage_error(
        self, error: Exception, action: str, bucket: str, key: Optional[str], what: str
    ) -> Optional[StorageError]:
        # boto3 wraps client errors of uploads, and download retries, in exceptions of its own.
        if isinstance(error, S3UploadFailedError) and isinstance(error.__context__, ClientError):
            error = error.__context__
        if isinstance(error, RetriesExceededError):
            error = error.last_exception
        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message") or code
            if bucket is not None and (code == "NoSuchBucket" or (_status(error) == 404 and key is None)):
                return self._missing_bucket(bucket)
            if _status(error) == 404 or code == "NoSuchKey":
                return self._missing_object(bucket, key)
            if _status(error) == 403 or code in DENIED_CODES:
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


def _utc(moment: Optional[datetime]) -> Optional[datetime]:
    return moment.astimezone(timezone.utc) if moment is not None else None


def _status(error: ClientError) -> int:
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)

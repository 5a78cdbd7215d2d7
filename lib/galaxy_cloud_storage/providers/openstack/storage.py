"""OpenStack Swift, through python-swiftclient directly: a token and a storage URL, nothing else.

cloudbridge's OpenStack provider is not used (README "How each cloud is reached"). In 4.4.2 its
``upload_from_file`` and ``delete`` swap a module-global swiftclient function
(``swiftclient.client.get_auth``) for the time of the call, so two users' transfers in one process
(a job handler, a web worker) could authenticate as each other; its large uploads write SLO segments
into the user's own container, where they show in listings and stay behind when an upload fails; and
building it without ``os_zone_name`` contacts Keystone. Here each backend holds one user's token and
storage URL (minted by credentials.py at the admin's Keystone or v1 auth), and each thread its
own ``swiftclient.client.Connection`` (they are not thread-safe).
``swiftclient.service.SwiftService`` is not used either: its defaults come from OS_* environment
variables, the server's own identity (invariant 3, docs/design.rst).

Large objects go up as a Static Large Object, as the ``swift`` CLI does it: segments of
the admin's ``segment_size`` in ``<container>_segments``, ``CONCURRENCY`` at a time, each streamed from the file
(memory stays bounded whatever the size, invariant 8), then the manifest. A failed upload deletes
the segments it wrote and writes no manifest (invariant 7); a successful one over a large object
deletes the replaced version's segments.
"""

import hashlib
import json
import logging
import math
import queue
import socket
import threading
import time
import uuid
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator, Optional
from urllib.parse import unquote, urlsplit

import urllib3.exceptions
from requests.exceptions import RequestException
from swiftclient.client import Connection
from swiftclient.exceptions import ClientException
from swiftclient.utils import LengthWrapper

from ..cancellation import open_for_sending
from ..integrity import Checksum, Digests, MD5, ObjectChecksums, SEGMENTS_MD5
from ..settings import MiB
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
from . import OpenStackCloud, OpenStackSettings

log = logging.getLogger(__name__)

CONCURRENCY = 4  # segments in flight per upload: memory is CONCURRENCY socket buffers, not segments
MAX_SEGMENTS = 1000  # Swift's default slo max_manifest_segments, where /info does not say (expose_info off)
CHUNK_SIZE = 1 * MiB  # read and write size when streaming a download
RANGE_SIZE = 16 * MiB  # a large object is read in ranges of this size, 4 at a time (StorageBackend)
# swiftclient retries connection errors and timeouts, 5xx, 408 and (retry_on_ratelimit) 429 and
# 498, never another 4xx, backing off 0.5, 1, 2 s: a request fails within about (RETRIES + 1) x
# TIMEOUT + 3.5 s, and within seconds where nothing listens; a hiccup is ridden out. A whole
# object's body resumes where it broke off (swiftclient's Range requests); a ranged read's is
# StorageBackend's.
RETRIES = 3
STARTING_BACKOFF = 0.5
MAX_BACKOFF = 4
TIMEOUT = 30  # seconds without a byte from Swift before a request counts as failed
# What a body that broke mid-way raises through swiftclient and http.client.
BROKEN_BODY_ERRORS = (socket.error, urllib3.exceptions.HTTPError, RequestException)


@dataclass(frozen=True)
class SwiftCredentials(JsonCredentials):
    """One user's Swift token and the storage URL it is for; the repr never shows the token."""

    storage_url: str
    token: str = field(repr=False)
    expires: Optional[datetime] = None

    def usable(self) -> bool:
        return bool(self.storage_url and self.token)


class CountingConnection(Connection):
    """A swiftclient Connection that counts its retries: the attempts after each call's first, and
    each time it resumes a broken body (its _RetryBody calls _retry again, continuing the count).
    swiftclient keeps only the last call's ``attempts``; a transfer's lines report them all."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.retried = 0

    def _retry(self, reset_func, func, *args, **kwargs):
        resumed_from = kwargs.get("attempts", 0)
        try:
            return super()._retry(reset_func, func, *args, **kwargs)
        finally:
            self.retried += max(0, self.attempts - resumed_from - 1) + (1 if resumed_from else 0)


class SwiftStorage(StorageBackend):
    """Swift with one user's token. A "bucket" is a container; its segments go in
    ``<container>_segments``, which users need write access to for objects above the admin's segment_size."""

    plugin = OpenStackCloud
    credentials_type = SwiftCredentials
    noun = "container"

    def __init__(
        self, settings: OpenStackSettings, credentials: SwiftCredentials, config: Optional[dict] = None
    ) -> None:
        super().__init__(credentials)
        if urlsplit(credentials.storage_url).scheme not in ("http", "https"):
            raise StorageError("The Swift storage URL of this authorization is not an http(s) URL.")
        self.settings = settings
        self.config = config or {}
        self.segment_size = settings.segment_size
        parts = urlsplit(credentials.storage_url)
        self.endpoint = f"{parts.scheme}://{parts.netloc}"  # for messages: the storage URL names the account
        self._idle: "queue.SimpleQueue[Connection]" = queue.SimpleQueue()
        self._max_segments: Optional[int] = None

    # -- connections ----------------------------------------------------------------------------

    @contextmanager
    def _connection(self, key: Optional[str] = None) -> Iterator[Connection]:
        """A Connection used by one thread at a time, returned to the pool afterwards; the retries
        of its calls meanwhile count as ``key``'s."""
        try:
            connection = self._idle.get_nowait()
        except queue.Empty:
            connection = CountingConnection(
                # No authurl, user or key: on a 401 swiftclient gives up instead of re-authenticating.
                preauthurl=self.credentials.storage_url,
                preauthtoken=self.credentials.token,
                cacert=self.settings.ca_bundle,
                insecure=False,
                retries=RETRIES,
                starting_backoff=STARTING_BACKOFF,
                max_backoff=MAX_BACKOFF,
                retry_on_ratelimit=True,
                timeout=TIMEOUT,
                os_options={},
            )
        retried = connection.retried
        try:
            yield connection
        finally:
            self._count_retry(key, connection.retried - retried)
            self._idle.put(connection)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    # -- StorageBackend -------------------------------------------------------------------------

    def _check_bucket(self, bucket: str) -> None:
        with self._connection() as conn:
            conn.head_container(bucket)

    def _stat(self, bucket: str, key: str) -> Optional[ObjectInfo]:
        try:
            with self._connection(key) as conn:
                headers = conn.head_object(bucket, key)
        except ClientException as e:
            if e.http_status == 404:
                return None
            raise
        return ObjectInfo(key=key, size=int(headers["content-length"]))

    def _list_sizes(self, bucket: str, prefix: str, limit: int) -> Iterator[tuple[str, int]]:
        """Swift lists an SLO's total size, not its manifest's."""
        listed, marker = 0, ""
        with self._connection() as conn:
            while listed < limit:
                size = min(1000, limit - listed)
                page = conn.get_container(bucket, prefix=prefix, marker=marker, limit=size)[1]
                for item in page:
                    yield item["name"], int(item["bytes"])
                listed += len(page)
                if len(page) < size:  # the last page
                    return
                marker = page[-1]["name"]

    def _list_buckets(self) -> list[BucketInfo]:
        # A container's listing says when it last changed, never when it was made.
        with self._connection() as conn:
            containers = conn.get_account(full_listing=True)[1]
        return [BucketInfo(container["name"]) for container in containers]

    def _list_page(
        self, bucket: str, prefix: str, delimiter: Optional[str], limit: int, continuation: Optional[str]
    ) -> ListingPage:
        """The continuation is Swift's marker: the page's last name, a subdir's too (given a subdir
        as marker, Swift's container server leaves it out and resumes past everything under it; a
        marker made up here to skip them, such as "a0" for "a/", would skip an object "a0").
        Swift does not say whether a page is the last: one more entry than ``limit`` is asked for,
        in the same call."""
        with self._connection() as conn:
            entries = conn.get_container(
                bucket, prefix=prefix, delimiter=delimiter, marker=continuation or "", limit=limit + 1
            )[1]
        more, entries = len(entries) > limit, entries[:limit]
        objects = [
            ListedObject(entry["name"], int(entry["bytes"]), _utc(entry["last_modified"]))
            for entry in entries
            if "subdir" not in entry
        ]
        folders = [entry["subdir"] for entry in entries if "subdir" in entry]
        if not more:
            return ListingPage(objects, folders, None)
        last = entries[-1]
        return ListingPage(objects, folders, last["subdir"] if "subdir" in last else last["name"])

    # -- downloads -------------------------------------------------------------------------------

    range_size = RANGE_SIZE
    whole_object_algorithms = (MD5,)

    def _read_whole(self, bucket: str, key: str, write: Callable[[bytes], None]) -> ObjectChecksums:
        with self._connection(key) as conn:
            # With resp_chunk_size, swiftclient streams, and resumes a broken body with a Range request.
            headers, body = conn.get_object(bucket, key, resp_chunk_size=CHUNK_SIZE)
            checksums = self._checksums(conn, bucket, key, headers)
            if checksums.segments is not None:
                # A large object's ETag is of its segments: read by ranges, hashing each segment.
                body.resp.close()
                return checksums
            pump(body, write, broken=BROKEN_BODY_ERRORS)
        return checksums

    def _head(self, bucket: str, key: str) -> ObjectChecksums:
        with self._connection(key) as conn:
            headers = conn.head_object(bucket, key)
            return self._checksums(conn, bucket, key, headers)

    def _read_range(
        self, bucket: str, key: str, checksums: ObjectChecksums, start: int, end: int, write: Callable[[bytes], None]
    ) -> None:
        # If-Match the ETag measured: a replaced object (large ones included) is a 412, never mixed in.
        with self._connection(key) as conn:
            _, body = conn.get_object(
                bucket,
                key,
                resp_chunk_size=CHUNK_SIZE,
                headers={"Range": f"bytes={start}-{end}", "If-Match": checksums.version},
            )
            pump(body, write, broken=BROKEN_BODY_ERRORS)

    def _checksums(self, conn: Connection, bucket: str, key: str, headers: dict) -> ObjectChecksums:
        """What Swift says of an object's bytes: a plain object's ETag is its MD5; a Static Large
        Object's is the MD5 of its segments' MD5s (its manifest gives their sizes); a Dynamic Large
        Object's covers segments listed anew at each read, so only its ``sha256`` metadata holds."""
        etag, segments, unverifiable = headers.get("etag", ""), None, None
        checksums = [Checksum.metadata_sha256(headers.get("x-object-meta-sha256"), "X-Object-Meta-Sha256")]
        if headers.get("x-static-large-object", "").lower() == "true":
            _, manifest = conn.get_object(bucket, key, query_string="multipart-manifest=get")
            entries = json.loads(manifest)
            if all("range" not in entry and not entry.get("sub_slo") for entry in entries):
                segments = tuple(int(entry["bytes"]) for entry in entries)
                checksums.append(Checksum.from_hex(SEGMENTS_MD5, etag, "ETag of a Static Large Object"))
            else:
                unverifiable = "a Static Large Object of ranges or nested objects, whose ETag is not of its bytes"
        elif "x-object-manifest" in headers:
            unverifiable = "a Dynamic Large Object, whose ETag covers segments listed anew at each read"
        else:
            checksums.append(Checksum.from_hex(MD5, etag, "ETag"))
        found = tuple(checksum for checksum in checksums if checksum is not None)
        return ObjectChecksums(
            int(headers["content-length"]), found, None if found else unverifiable, segments, version=etag
        )

    def _upload_algorithms(self, size: int) -> tuple[str, ...]:
        return (MD5,) if size <= self.segment_size else (SEGMENTS_MD5,)

    def _upload_segments(self, size: int, key: str) -> Optional[list[int]]:
        if size <= self.segment_size:
            return None
        segment_size = self._segment_size_for(size, key)
        return [min(segment_size, size - offset) for offset in range(0, size, segment_size)]

    def _segment_size_for(self, size: int, key: Optional[str] = None) -> int:
        # Swift refuses a manifest of more segments than its limit: larger objects get larger segments.
        return max(self.segment_size, math.ceil(size / self.max_segments(key)))

    def _stored_checksums(self, bucket: str, key: str) -> ObjectChecksums:
        return self._head(bucket, key)

    def _delete(self, bucket: str, key: str) -> None:
        with self._connection(key) as conn:  # an SLO with its segments (a plain object ignores the query)
            conn.delete_object(bucket, key, query_string="multipart-manifest=delete")

    def _upload(self, path: str, size: int, bucket: str, key: str, digests: Digests) -> None:
        """Swift verifies each request's ETag on receipt (422 when the body differs): the file's MD5
        for a whole object, each segment's for a large one, whose manifest PUT also names the
        segments' ETags and the whole object's, all from the first read of the file."""
        replaced = self._segments_of(bucket, key)
        if size <= self.segment_size:
            self._put_whole(path, size, bucket, key, digests)
        else:
            self._put_large(path, size, bucket, key, digests)
        # Overwritten: the old version's segments would stay forever, unlisted and billed (the
        # swift CLI deletes them likewise). Only now: had the upload failed, the old version stays whole.
        self._delete_replaced_segments(replaced)

    # -- uploads --------------------------------------------------------------------------------

    def _put_whole(self, path: str, size: int, bucket: str, key: str, digests: Digests) -> None:
        with open_for_sending(path, self.count_bytes) as fh, self._connection(key) as conn:
            _put_checked(
                conn, bucket, key, fh, 0, size, digests.hexdigest(MD5), {"X-Object-Meta-Sha256": digests.sha256}
            )

    def _put_large(self, path: str, size: int, bucket: str, key: str, digests: Digests) -> None:
        segment_size = self._segment_size_for(size, key)
        count = math.ceil(size / segment_size)
        md5s = digests.segment_md5s()
        segments_container = f"{bucket}_segments"
        self._ensure_segments_container(bucket, segments_container, key)
        # Unique per upload, so that two uploads of one key never share (or delete) segments.
        prefix = f"{key}/slo/{time.time():.6f}-{uuid.uuid4().hex[:8]}/{size}/{segment_size}/"
        names = [f"{prefix}{index:08d}" for index in range(count)]
        started: set[str] = set()
        cancelled = threading.Event()

        def put_segment(index: int) -> Optional[dict]:
            if cancelled.is_set():  # another segment failed: the upload is being undone
                return None
            offset, length = index * segment_size, min(segment_size, size - index * segment_size)
            started.add(names[index])
            with open_for_sending(path, self.count_bytes) as fh, self._connection(key) as conn:
                etag = _put_checked(conn, segments_container, names[index], fh, offset, length, md5s[index])
            return {"path": f"/{segments_container}/{names[index]}", "etag": etag, "size_bytes": length}

        try:
            with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="swift-segment") as pool:
                futures = [pool.submit(put_segment, index) for index in range(count)]
                wait(futures, return_when=FIRST_EXCEPTION)
                failed = next((f for f in futures if f.done() and not f.cancelled() and f.exception()), None)
                if failed is not None:
                    cancelled.set()
                    for future in futures:
                        future.cancel()
                    raise failed.exception()  # leaving the pool waits for the segments in flight
                manifest = [future.result() for future in futures]
            whole_etag = hashlib.md5("".join(md5s).encode()).hexdigest()  # Swift compares it with the segments'
            with self._connection(key) as conn:
                conn.put_object(
                    bucket, key, json.dumps(manifest), query_string="multipart-manifest=put",
                    content_type="application/octet-stream", etag=whole_etag,
                    headers={"X-Object-Meta-Sha256": digests.sha256},
                )  # fmt: skip
        except BaseException:
            self._delete_segments(segments_container, sorted(started))
            raise

    def max_segments(self, key: Optional[str] = None) -> int:
        """The cluster's limit on an SLO's segments, from its /info (once per backend; its
        retries count as ``key``'s)."""
        if self._max_segments is None:
            try:
                with self._connection(key) as conn:
                    limit = conn.get_capabilities().get("slo", {}).get("max_manifest_segments")
            except (ClientException, RequestException, OSError):
                limit = None
            self._max_segments = int(limit) if limit else MAX_SEGMENTS
        return self._max_segments

    def _segments_of(self, bucket: str, key: str) -> list[tuple[str, str]]:
        """(container, name) of the segments of the large object at ``key``, if there is one."""
        with self._connection(key) as conn:
            try:
                headers = conn.head_object(bucket, key)
            except ClientException as e:
                if e.http_status == 404:
                    return []
                raise
            if "content-location" in headers:  # a symlink: the segments are its target's
                return []
            if headers.get("x-static-large-object", "").lower() == "true":
                _, body = conn.get_object(bucket, key, query_string="multipart-manifest=get")
                paths = [segment["name"] for segment in json.loads(body)]
                return [tuple(path.lstrip("/").split("/", 1)) for path in paths]
            if "x-object-manifest" in headers:  # a dynamic large object (older tools): all under its prefix
                container, prefix = unquote(headers["x-object-manifest"]).split("/", 1)
                _, listing = conn.get_container(container, prefix=prefix, full_listing=True)
                return [(container, entry["name"]) for entry in listing]
        return []

    def _delete_replaced_segments(self, segments: list[tuple[str, str]]) -> None:
        for container in dict.fromkeys(container for container, _ in segments):
            self._delete_segments(container, [name for c, name in segments if c == container], "a replaced object")

    def _ensure_segments_container(self, bucket: str, segments_container: str, key: str) -> None:
        with self._connection(key) as conn:
            headers = conn.head_container(bucket)  # BucketNotFound / AccessDenied before any write
            try:
                conn.head_container(segments_container)
            except ClientException as e:
                if e.http_status != 404:
                    raise
                # In the container's storage policy, as the swift CLI does.
                policy = headers.get("x-storage-policy")
                conn.put_container(segments_container, headers={"X-Storage-Policy": policy} if policy else None)

    def _delete_segments(self, segments_container: str, names: list[str], whose: str = "a failed upload") -> None:
        """Best effort: the segments of ``whose`` (404s are fine). Swift gone (no answer after the
        retries): the others are not tried, each would take as long to fail."""
        leftover = 0
        for index, name in enumerate(names):
            try:
                with self._connection() as conn:
                    conn.delete_object(segments_container, name)
            except ClientException as e:
                if e.http_status is None:
                    leftover += len(names) - index
                    break
                if e.http_status != 404:
                    leftover += 1
            except (RequestException, OSError):
                leftover += len(names) - index
                break
            except Exception:
                leftover += 1
        if leftover:
            log.warning("%d segments of %s could not be deleted from container %s", leftover, whose, segments_container)

    # -- errors ---------------------------------------------------------------------------------

    def _storage_error(
        self, error: Exception, action: str, bucket: str, key: Optional[str], what: str
    ) -> Optional[StorageError]:
        if isinstance(error, ClientException):
            status = error.http_status
            if status == 412:
                return StorageError(f"Could not {action} {what}: it was replaced while being copied; try again")
            if status == 422 or (status == 400 and "etag" in str(error.http_response_content or "").lower()):
                return IntegrityError(
                    f"Swift refused {what}: the bytes it received do not match their MD5 (HTTP {status})"
                )
            if status == 404:
                # Swift answers a PUT into a missing container with 404; a GET or HEAD of a missing
                # object in a missing container with 404 too (the object is missing, either way).
                if bucket is None:
                    return StorageError(f"Could not {action} {what}: Swift knows no such account")
                if key is None or action == "upload":
                    return self._missing_bucket(bucket)
                return self._missing_object(bucket, key)
            if status in (401, 403):
                reason = "the token was refused or has expired" if status == 401 else "not allowed"
                segments = " (or its segments container)" if action == "upload" else ""
                return AccessDenied(
                    f"Access to {what}{segments} denied (HTTP {status}, {reason}): the authorization's "
                    f"credentials may not {action} {self._it(bucket)}"
                )
            if status is None:  # no answer at all after the retries
                return StorageError(f"Could not {action} {what}: the Swift endpoint {self.endpoint} is unreachable")
            return StorageError(
                f"Could not {action} {what}: Swift answered HTTP {status} {error.http_reason or ''}".rstrip()
            )
        if isinstance(error, RequestException):
            return StorageError(f"Could not {action} {what}: the Swift endpoint {self.endpoint} is unreachable")
        return None


def _utc(moment: str) -> datetime:
    """Swift's listings give UTC times without an offset."""
    return datetime.fromisoformat(moment).replace(tzinfo=timezone.utc)


def _put_checked(
    conn: Connection, container: str, name: str, fh, offset: int, length: int, md5: str, headers: Optional[dict] = None
) -> str:
    """PUT ``length`` bytes of ``fh`` from ``offset``, streamed, declaring their ``md5``, which Swift
    verifies (a 422 when what it received differs); returns it. swiftclient seeks back to
    ``offset`` to retry."""
    fh.seek(offset)
    body = LengthWrapper(fh, length, md5=False)
    etag = conn.put_object(
        container, name, body, content_length=length, etag=md5, headers=headers,
        content_type="application/octet-stream",
    )  # fmt: skip
    if etag and etag.strip('"') != md5:
        raise IntegrityError(f"Swift stored different bytes than were sent for '{name}' in container '{container}'")
    return md5

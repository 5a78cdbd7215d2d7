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

import json
import logging
import math
import queue
import threading
import time
import uuid
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator, Optional
from urllib.parse import unquote, urlsplit

from requests.exceptions import RequestException
from swiftclient.client import Connection
from swiftclient.exceptions import ClientException
from swiftclient.utils import LengthWrapper

from ..cancellation import open_for_sending
from ..settings import MiB
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
from . import OpenStackCloud, OpenStackSettings

log = logging.getLogger(__name__)

CONCURRENCY = 4  # segments in flight per upload: memory is CONCURRENCY socket buffers, not segments
MAX_SEGMENTS = 1000  # Swift's default slo max_manifest_segments, where /info does not say (expose_info off)
CHUNK_SIZE = 1 * MiB  # read and write size when streaming a download
# swiftclient retries connection errors and 5xx, backing off 0.5, 1, 2 s: an outage is reported
# within seconds, a hiccup is ridden out. Downloads resume where they broke off (Range requests).
RETRIES = 3
STARTING_BACKOFF = 0.5
MAX_BACKOFF = 4
TIMEOUT = 60  # seconds without a byte from Swift before a request counts as failed


@dataclass(frozen=True)
class SwiftCredentials(JsonCredentials):
    """One user's Swift token and the storage URL it is for; the repr never shows the token."""

    storage_url: str
    token: str = field(repr=False)
    expires: Optional[datetime] = None

    def usable(self) -> bool:
        return bool(self.storage_url and self.token)


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
    def _connection(self) -> Iterator[Connection]:
        """A Connection used by one thread at a time, returned to the pool afterwards."""
        try:
            connection = self._idle.get_nowait()
        except queue.Empty:
            connection = Connection(
                # No authurl, user or key: on a 401 swiftclient gives up instead of re-authenticating.
                preauthurl=self.credentials.storage_url,
                preauthtoken=self.credentials.token,
                cacert=self.settings.ca_bundle,
                insecure=False,
                retries=RETRIES,
                starting_backoff=STARTING_BACKOFF,
                max_backoff=MAX_BACKOFF,
                timeout=TIMEOUT,
                os_options={},
            )
        try:
            yield connection
        finally:
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
            with self._connection() as conn:
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

    def _download_into(self, bucket: str, key: str, partial: str, size_hint: Optional[int]) -> int:
        with self._connection() as conn:
            # With resp_chunk_size, swiftclient streams, and resumes a broken body with a Range request.
            headers, body = conn.get_object(bucket, key, resp_chunk_size=CHUNK_SIZE)
            return self._write_stream(body, partial, int(headers["content-length"]), bucket, key)

    def _upload(self, path: str, size: int, bucket: str, key: str) -> None:
        replaced = self._segments_of(bucket, key)
        if size <= self.segment_size:
            self._put_whole(path, size, bucket, key)
        else:
            self._put_large(path, size, bucket, key)
        # Overwritten: the old version's segments would stay forever, unlisted and billed (the
        # swift CLI deletes them likewise). Only now: had the upload failed, the old version stays whole.
        self._delete_replaced_segments(replaced)

    # -- uploads --------------------------------------------------------------------------------

    def _put_whole(self, path: str, size: int, bucket: str, key: str) -> None:
        with open_for_sending(path) as fh, self._connection() as conn:
            _put_checked(conn, bucket, key, fh, 0, size)

    def _put_large(self, path: str, size: int, bucket: str, key: str) -> None:
        # Swift refuses a manifest of more segments than its limit: larger objects get larger segments.
        segment_size = max(self.segment_size, math.ceil(size / self.max_segments()))
        count = math.ceil(size / segment_size)
        segments_container = f"{bucket}_segments"
        self._ensure_segments_container(bucket, segments_container)
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
            with open_for_sending(path) as fh, self._connection() as conn:
                etag = _put_checked(conn, segments_container, names[index], fh, offset, length)
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
            with self._connection() as conn:
                conn.put_object(
                    bucket, key, json.dumps(manifest), query_string="multipart-manifest=put",
                    content_type="application/octet-stream",
                )  # fmt: skip
        except BaseException:
            self._delete_segments(segments_container, sorted(started))
            raise

    def max_segments(self) -> int:
        """The cluster's limit on an SLO's segments, from its /info (once per backend)."""
        if self._max_segments is None:
            try:
                with self._connection() as conn:
                    limit = conn.get_capabilities().get("slo", {}).get("max_manifest_segments")
            except (ClientException, RequestException, OSError):
                limit = None
            self._max_segments = int(limit) if limit else MAX_SEGMENTS
        return self._max_segments

    def _segments_of(self, bucket: str, key: str) -> list[tuple[str, str]]:
        """(container, name) of the segments of the large object at ``key``, if there is one."""
        with self._connection() as conn:
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

    def _ensure_segments_container(self, bucket: str, segments_container: str) -> None:
        with self._connection() as conn:
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
        """Best effort: the segments of ``whose`` (404s are fine)."""
        leftover = 0
        for name in names:
            try:
                with self._connection() as conn:
                    conn.delete_object(segments_container, name)
            except ClientException as e:
                if e.http_status != 404:
                    leftover += 1
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


def _put_checked(conn: Connection, container: str, name: str, fh, offset: int, length: int) -> str:
    """PUT ``length`` bytes of ``fh`` from ``offset``, streamed; returns the MD5 Swift confirmed.
    swiftclient seeks back to ``offset`` to retry."""
    fh.seek(offset)
    body = LengthWrapper(fh, length, md5=True)
    etag = conn.put_object(container, name, body, content_length=length, content_type="application/octet-stream")
    sent = body.get_md5sum()
    if etag and etag.strip('"') != sent:
        raise StorageError(f"Swift stored different bytes than were sent for '{name}' in container '{container}'")
    return sent

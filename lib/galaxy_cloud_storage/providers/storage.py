"""The storage interface the manager and the transfer engine use, whatever the cloud.

``StorageBackend`` holds what every cloud does the same, as template methods: names checked
against the cloud's rules before any call (invariant 10, docs/design.rst), an atomic download (the bytes go to a
partial file beside the target, renamed only when whole; nothing that looks like the object is
left after a failure, invariant 7), the pre-check before an upload, and SDK errors turned into
``StorageError`` messages fit for a user. A cloud's backend writes only what differs: the
``_check_bucket``, ``_stat``, ``_download_into``, ``_upload`` and ``_list_sizes`` calls, and
``_storage_error``, which maps its SDK's errors.
"""

import abc
import collections
import dataclasses
import logging
import os
import queue
import random
import tempfile
import threading
import time
import typing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Callable, ClassVar, Iterable, NoReturn, Optional, TYPE_CHECKING

from .integrity import ChecksumMismatch, digest_file, Digests, galaxy_hashes, ObjectChecksums, Verified, verify
from .names import InvalidName, NameRules

if TYPE_CHECKING:
    from .cloud import Cloud

log = logging.getLogger(__name__)

STAT_WORKERS = 16  # parallel HEAD requests for stat_many
LISTING_LIMIT = 10000  # past this many objects under a prefix, stat_many asks key by key instead
MAX_PAGE_SIZE = 1000  # the most any cloud returns in one listing call (S3's MaxKeys, Azure, GCS, Swift)
DELIMITERS = (None, "/")  # a listing is recursive (None) or by folder ("/")
#: Ranges of one download in flight or waiting to be written, at most: the file is written (and
#: hashed) in order, so ranges read ahead wait in memory; RANGES_AHEAD x range_size bounds it.
RANGES_AHEAD = 4
#: A body that breaks mid-way (a reset, a stall past the read timeout) is asked again from the byte
#: reached, this many times, BODY_BACKOFF seconds apart at first, doubling, with jitter. The SDKs'
#: own retries cover a request until its response starts; the body of a ranged read is ours.
BODY_RETRIES = 4
BODY_BACKOFF = 0.5
BODY_BACKOFF_MAX = 8.0
#: What a range's reader hands the writer at a time: SDKs give bodies in pieces of 8 KiB to 4 MiB.
WRITE_BLOCK = 1024 * 1024


class JsonCredentials:
    """For a cloud's credentials dataclass: its JSON form, in which it travels to the transfer job
    (its fields, datetimes as ISO 8601), and back; and whether it holds enough to use."""

    def usable(self) -> bool:
        """Whether every field a request needs is there (invariant 3: an empty one would make an SDK
        look for the server's own identity)."""
        raise NotImplementedError

    def to_json(self) -> dict:
        return {f.name: _isoformat(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict):
        hints = typing.get_type_hints(cls)
        values = {}
        for f in fields(cls):
            if f.name in data:
                value = data[f.name]
                if isinstance(value, str) and datetime in (typing.get_args(hints[f.name]) or (hints[f.name],)):
                    value = datetime.fromisoformat(value)
                values[f.name] = value
        return cls(**values)


def _isoformat(value):
    return value.isoformat() if isinstance(value, datetime) else value


class StorageError(Exception):
    """A storage operation failed; ``str()`` is a message fit for a user (no credentials in it)."""


class BucketNotFound(StorageError):
    pass


class AccessDenied(StorageError):
    pass


class ObjectNotFound(StorageError):
    pass


class MissingCredentials(StorageError):
    """Invariant 3: never fall back to the server's own cloud identity."""


class InvalidObjectName(StorageError):
    """A bucket or key its cloud cannot hold (names.NameRules); refused before any call."""


class IntegrityError(StorageError):
    """The bytes do not match a checksum (the cloud's, or the dataset's Galaxy hash); the message
    names the object, the expected and the computed value. Never retried: nothing is kept."""


class BrokenBody(Exception):
    """A response's body ended before the bytes it announced (the server closed the connection)."""


# Set by the transfer job's SIGTERM handler (transfer.job.stop); providers.cancellation makes the
# transfers under way notice it.
STOPPED = threading.Event()


class TransferStopped(StorageError):
    """The job was stopped (SIGTERM) while this object moved; nothing of it was kept."""


def check_not_stopped() -> None:
    if STOPPED.is_set():
        raise TransferStopped("the job was stopped (SIGTERM) before it was whole; nothing of it was kept")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True)
class Transferred:
    """One object moved: its size, how its bytes were verified (their SHA-256 among it), and how
    many requests or bodies were asked again after a transient fault."""

    size: int
    verified: Verified
    retries: int = 0


@dataclass(frozen=True)
class BucketInfo:
    """A bucket (container) the credentials can see; ``created`` where the cloud says (S3, GCS)."""

    name: str
    created: Optional[datetime] = None


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    last_modified: Optional[datetime] = None


@dataclass(frozen=True)
class ListingPage:
    """One listing call's answer, in the cloud's order."""

    objects: list[ListedObject]
    #: the common prefixes under the listing's prefix, each ending in the delimiter (only with one)
    folders: list[str]
    #: the cloud's own continuation of this listing (S3's ContinuationToken, Azure's marker, GCS's
    #: pageToken, Swift's marker), None on the last page
    continuation: Optional[str]


class StorageBackend(abc.ABC):
    """One cloud account, reached with one user's short-lived credentials at admin-set endpoints."""

    #: the cloud this backend serves (its ``backend`` becomes this class)
    plugin: ClassVar[type["Cloud"]]
    #: the credentials it takes (their JSON form travels to the job)
    credentials_type: ClassVar[type[JsonCredentials]]
    #: how messages name a bucket ("bucket", "container")
    noun: ClassVar[str] = "bucket"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "plugin" in cls.__dict__:
            cls.plugin.backend = cls

    def __init__(self, credentials: Optional[JsonCredentials]) -> None:
        # Invariant 3: without credentials there is nothing to fall back on, ever.
        if credentials is None or not credentials.usable():
            raise MissingCredentials(f"No {self.plugin().label} credentials for this authorization; authorize again.")
        self.credentials = credentials
        #: requests and bodies asked again, by object key (the SDKs' retries are counted through
        #: their own hooks, from their threads)
        self._retries: collections.Counter = collections.Counter()
        #: told of each count of bytes moved, from any thread (the job's progress, transfer.progress)
        self.count_bytes: Callable[[int], None] = _ignore

    @property
    def names(self) -> NameRules:
        """The cloud's rules for bucket and object names (invariant 10)."""
        return self.plugin.names

    # -- the interface ----------------------------------------------------------------------------

    def check_bucket(self, bucket: str) -> None:
        """Return if the bucket exists and is reachable; raise BucketNotFound or AccessDenied."""
        self._check_names(bucket)
        try:
            self._check_bucket(bucket)
        except Exception as e:
            self._raise(e, "reach", bucket)

    def stat(self, bucket: str, key: str) -> Optional[ObjectInfo]:
        """The object's size, or None when it does not exist; AccessDenied when not allowed."""
        self._check_names(bucket, key)
        try:
            return self._stat(bucket, key)
        except Exception as e:
            self._raise(e, "read", bucket, key)

    def list_sizes(self, bucket: str, prefix: str, limit: int) -> Iterable[tuple[str, int]]:
        """Name and size of the objects under ``prefix``, at most ``limit`` of them, paged by the
        server; any error means "cannot list" (stat_many then asks key by key)."""
        self._check_names(bucket)
        return self._list_sizes(bucket, prefix, limit)

    def list_buckets(self) -> list[BucketInfo]:
        """The buckets these credentials may see; AccessDenied where they may not list them (a role
        scoped to one bucket), which says nothing about the buckets they may use."""
        try:
            return self._list_buckets()
        except Exception as e:
            self._raise(e, "list", None)

    def list_page(
        self, bucket: str, prefix: str, delimiter: Optional[str], limit: int, continuation: Optional[str] = None
    ) -> ListingPage:
        """One page of what is under ``prefix``, with exactly one listing call to the cloud, whatever
        the page's position: at most ``limit`` (1 to MAX_PAGE_SIZE) objects and folders together;
        folders only with a ``delimiter`` (recursive without). ``continuation`` is a page's own, as
        this backend returned it; walking the pages yields every key once, in the cloud's order."""
        if delimiter not in DELIMITERS:
            raise ValueError(f"delimiter must be one of {DELIMITERS}")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be 1 to {MAX_PAGE_SIZE}")
        self._check_names(bucket)
        try:
            return self._list_page(bucket, prefix, delimiter, limit, continuation)
        except Exception as e:
            self._raise(e, "list", bucket)

    def stat_many(self, bucket: str, keys: list[str]) -> list[Optional[ObjectInfo]]:
        """``stat`` of each key, in order. One listing under the keys' common prefix answers for
        all of them when it is short (a request's 100 keys in one folder: one call instead of 100);
        otherwise, or where listing is not allowed, each key is asked for. The first key is asked
        for in any case: listing is allowed more often than reading, and a 403 there must not read
        as "missing"."""
        if not keys:
            return []
        self._check_names(bucket, *keys)
        wanted, sizes = set(keys), {}
        try:
            listed = 0
            for name, size in self._list_sizes(bucket, os.path.commonprefix(keys), LISTING_LIMIT):
                listed += 1
                if name in wanted:
                    sizes[name] = size
            complete = listed < LISTING_LIMIT
        except Exception:  # denied, unsupported or failed listing: each key still answers
            complete = False
        if complete:
            first = self.stat(bucket, keys[0])  # AccessDenied where objects may not be read
            return [first] + [ObjectInfo(key, sizes[key]) if key in sizes else None for key in keys[1:]]
        unknown = [key for key in keys if key not in sizes]
        asked = dict(zip(unknown, self._stat_each(bucket, unknown), strict=True))
        return [ObjectInfo(key, sizes[key]) if key in sizes else asked[key] for key in keys]

    def download(self, bucket: str, key: str, path: str, size_hint: Optional[int] = None) -> Transferred:
        """Stream the object into ``path`` with bounded memory, hashing it as it comes, and check it
        against every whole-object checksum its cloud keeps (invariant 11). The bytes go to a
        partial file beside ``path``, renamed to it when whole and verified: ``path`` may exist
        before (Galaxy creates its output files), and after a failure neither holds anything that
        looks like the object. ``size_hint``, the size a listing gave, lets a backend choose how to
        move the object; the bytes written are the object's, whatever its size is now."""
        self._check_names(bucket, key)
        directory, name = os.path.split(os.path.abspath(path))
        fd, partial = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
        os.close(fd)
        self.take_retries(key)
        try:
            checksums, digests = self._download_verified(bucket, key, partial, size_hint)
            verified = self._verified(bucket, key, checksums, digests)
            check_not_stopped()  # whatever the SDK did meanwhile, a stopped job's output stays empty
            os.replace(partial, path)
        except BaseException as e:
            remove_file(partial)
            remove_file(path)
            if isinstance(e, Exception):
                self._raise(e, "download", bucket, key)
            raise
        return Transferred(digests.size, verified, self.take_retries(key))

    def upload(self, path: str, bucket: str, key: str, hashes: Iterable[dict] = ()) -> Transferred:
        """Stream ``path`` into the object; a failed upload leaves no object and no hidden parts
        (multipart uploads aborted, blocks uncommitted, segments deleted).

        The file is read twice. First to hash it: the object's SHA-256 goes into its metadata, and
        the checksum its cloud verifies on receipt is declared with the upload; a file that does not
        match ``hashes`` (the dataset's Galaxy hashes, ``{"hash_function", "hash_value"}``) is not
        sent at all. Then to send it; afterwards the stored object's own checksum is compared with
        the first read's, and an object that differs is deleted."""
        self._check_names(bucket, key)
        self.take_retries(key)
        expected = galaxy_hashes(hashes)
        try:
            size = os.path.getsize(path)
            digests = digest_file(
                path,
                [*self._upload_algorithms(size), *(checksum.algorithm for checksum in expected)],
                self._upload_segments(size, key),
                reader=_stoppable_open,
            )
        except OSError as e:
            raise StorageError(
                f"Cannot read {path} to send it to '{key}' in {self.noun} '{bucket}': {e.strerror}"
            ) from e
        dataset = f"The dataset sent to '{key}'"
        try:
            verify(dataset, ObjectChecksums(size, expected), digests)
        except ChecksumMismatch as e:
            raise IntegrityError(f"{e}: its file is not what Galaxy recorded; nothing was sent") from None
        try:
            self._upload(path, size, bucket, key, digests)
        except Exception as e:
            self._raise(e, "upload", bucket, key)
        try:
            stored = self._stored_checksums(bucket, key)
        except Exception as e:
            try:
                self._raise(e, "read back", bucket, key)
            except AccessDenied:  # a bucket one may write to, not read from (a drop box)
                unread = "the cloud checked it on receipt; these credentials may not read it back to compare"
                return Transferred(size, Verified(digests.sha256, (), unread), self.take_retries(key))
        # The upload's own metadata proves nothing about what was stored: the cloud's checksums do.
        stored = dataclasses.replace(
            stored, checksums=tuple(c for c in stored.checksums if c.algorithm in digests and not c.from_metadata)
        )
        try:
            verified = verify(f"Object '{key}' in {self.noun} '{bucket}'", stored, digests)
        except ChecksumMismatch as e:
            self._delete_quietly(bucket, key)
            raise IntegrityError(f"{e}: the stored object differs from the file sent, and was deleted") from None
        return Transferred(size, verified, self.take_retries(key))

    # -- downloads: one request, or ranges written in order --------------------------------------

    def _download_verified(
        self, bucket: str, key: str, partial: str, size_hint: Optional[int]
    ) -> tuple[ObjectChecksums, Digests]:
        """The object's bytes in ``partial``, with their digests and what the cloud said of them.
        An object listed below one range is one request (the checksums come with it); a larger
        one, or one whose first request broke mid-way, is read by ranges of this very version."""
        if size_hint is not None and size_hint < self.range_size:
            digests = Digests(self.whole_object_algorithms)
            try:
                with open(partial, "wb") as fh:
                    checksums = self._read_whole(bucket, key, _Writer(fh, digests, self.count_bytes).write)
                if all(algorithm in digests for algorithm in checksums.algorithms):
                    if checksums.size is not None and checksums.size != digests.size:
                        raise BrokenBody(f"got {digests.size} of {checksums.size} bytes")
                    return checksums, digests
            except BrokenBody:
                self._count_retry(key)
        checksums = self._head(bucket, key).cheapest()
        digests = Digests(checksums.algorithms, checksums.segments, threaded=True)
        try:
            with open(partial, "wb") as fh:
                self._read_ranges(bucket, key, checksums, _Writer(fh, digests, self.count_bytes))
        except BaseException:
            digests.close()
            raise
        return checksums, digests

    def _read_ranges(self, bucket: str, key: str, checksums: ObjectChecksums, writer: "_Writer") -> None:
        """Ranges of range_size, RANGES_AHEAD at a time, each read by a thread of its own into a
        queue that this thread empties into the file, in order: the object is hashed as it is
        written, once, and memory holds at most RANGES_AHEAD ranges."""
        size, step = checksums.size, self.range_size
        spans = [(start, min(start + step, size) - 1) for start in range(0, size, step)]
        if len(spans) <= 1:
            for start, end in spans:
                self._read_span(bucket, key, checksums, start, end, writer.write)
            return
        # A range may start once the ranges RANGES_AHEAD before it are written: in order, so that
        # the range being written is always being read (a semaphore's wake-ups come in any order).
        window = threading.Condition()
        written = 0
        failed = threading.Event()
        queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in spans]

        def read(index: int) -> None:
            with window:
                while index >= written + RANGES_AHEAD and not failed.is_set():
                    window.wait(0.2)
            if failed.is_set():
                return
            pending = bytearray()

            def put(data: bytes) -> None:
                nonlocal pending
                if failed.is_set():
                    raise TransferStopped("another range of this object failed")
                if not pending and len(data) >= WRITE_BLOCK:
                    queues[index].put(data)  # large enough as it comes: no copy
                    return
                pending += data
                if len(pending) >= WRITE_BLOCK:
                    queues[index].put(pending)
                    pending = bytearray()

            try:
                self._read_span(bucket, key, checksums, *spans[index], put)
                queues[index].put(pending)
                queues[index].put(None)
            except BaseException as e:
                queues[index].put(e)

        with ThreadPoolExecutor(RANGES_AHEAD, thread_name_prefix="cloud-range") as pool:
            for index in range(len(spans)):
                pool.submit(read, index)
            try:
                for pieces in queues:
                    while (piece := pieces.get()) is not None:
                        if isinstance(piece, BaseException):
                            raise piece
                        writer.write(piece)
                    with window:
                        written += 1
                        window.notify_all()
            except BaseException:
                failed.set()
                raise

    def _read_span(
        self, bucket: str, key: str, checksums: ObjectChecksums, start: int, end: int, write: Callable[[bytes], None]
    ) -> None:
        """Bytes ``start`` to ``end`` (inclusive) of the version ``checksums`` describes, through
        ``write``; a body that breaks is asked again from the byte reached (BODY_RETRIES)."""
        position, attempt = start, 0

        def counted(data: bytes) -> None:
            nonlocal position
            check_not_stopped()
            if position + len(data) > end + 1:  # a server that sent more than the range asked for
                raise StorageError(f"got more than bytes {start}-{end} of object '{key}' in {self.noun} '{bucket}'")
            write(data)
            position += len(data)

        while True:
            try:
                self._read_range(bucket, key, checksums, position, end, counted)
                if position <= end:
                    raise BrokenBody(f"the body ended at byte {position} of {end + 1}")
                return
            except BrokenBody:
                if attempt >= BODY_RETRIES:
                    raise
            attempt += 1
            self._count_retry(key)
            time.sleep(min(BODY_BACKOFF_MAX, BODY_BACKOFF * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))

    def _verified(self, bucket: str, key: str, checksums: ObjectChecksums, digests: Digests) -> Verified:
        what = f"Object '{key}' in {self.noun} '{bucket}'"
        try:
            return verify(what, checksums, digests)
        except ChecksumMismatch as e:
            raise IntegrityError(f"{e}: the bytes received are not the object's; nothing of it was kept") from None

    # -- retries ------------------------------------------------------------------------------

    def _count_retry(self, key: Optional[str], times: int = 1) -> None:
        if key is not None and times > 0:
            with _RETRY_LOCK:
                self._retries[key] += times

    def take_retries(self, key: str) -> int:
        """The retries counted for ``key`` since the last call (its transfer's, once it ended)."""
        with _RETRY_LOCK:
            return self._retries.pop(key, 0)

    # -- what a cloud writes ------------------------------------------------------------------------

    @abc.abstractmethod
    def _check_bucket(self, bucket: str) -> None: ...

    @abc.abstractmethod
    def _stat(self, bucket: str, key: str) -> Optional[ObjectInfo]:
        """None for a missing object (the cloud's own way of saying so); raise otherwise."""

    @abc.abstractmethod
    def _list_sizes(self, bucket: str, prefix: str, limit: int) -> Iterable[tuple[str, int]]: ...

    @abc.abstractmethod
    def _list_buckets(self) -> list[BucketInfo]: ...

    @abc.abstractmethod
    def _list_page(
        self, bucket: str, prefix: str, delimiter: Optional[str], limit: int, continuation: Optional[str]
    ) -> ListingPage: ...

    #: bytes of one ranged read (the admin's part, chunk or range size); objects listed below it
    #: are one request
    range_size: int = 16 * 1024 * 1024
    #: what one request for a whole object is hashed for: every kind of whole-object checksum the
    #: cloud may give with it (SHA-256 is always computed)
    whole_object_algorithms: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def _read_whole(self, bucket: str, key: str, write: Callable[[bytes], None]) -> ObjectChecksums:
        """One request for the whole object, its body through ``write`` in order; returns what the
        response said of the object (its size, None where it does not say, and its checksums).
        A body that breaks mid-way (a reset, a read timeout: what the SDK's own retries did not
        mend) raises BrokenBody, here and in ``_read_range``; the read is then asked again."""

    @abc.abstractmethod
    def _head(self, bucket: str, key: str) -> ObjectChecksums:
        """The object's size, whole-object checksums, and ``version`` (what a ranged read of this
        very version is conditioned on)."""

    @abc.abstractmethod
    def _read_range(
        self, bucket: str, key: str, checksums: ObjectChecksums, start: int, end: int, write: Callable[[bytes], None]
    ) -> None:
        """Bytes ``start`` to ``end`` (inclusive) of the version ``checksums.version``, through
        ``write``; an object replaced meanwhile is an error, never a mix of two versions."""

    @abc.abstractmethod
    def _upload(self, path: str, size: int, bucket: str, key: str, digests: Digests) -> None:
        """Send the file, declaring the checksum of ``digests`` that the cloud verifies on receipt,
        and its SHA-256 as the object's metadata ``sha256``."""

    def _upload_algorithms(self, size: int) -> tuple[str, ...]:
        """What the first read of a file of ``size`` bytes computes for ``_upload`` (SHA-256 always)."""
        return ()

    def _upload_segments(self, size: int, key: str) -> Optional[list[int]]:
        """The segment sizes the upload of ``key`` will use, where its checksum is made of them (Swift)."""
        return None

    @abc.abstractmethod
    def _stored_checksums(self, bucket: str, key: str) -> ObjectChecksums:
        """What the cloud says of the object just stored (its checksums, with the upload's)."""

    def _delete_quietly(self, bucket: str, key: str) -> None:
        """Delete an object an upload stored wrongly (best effort: the error says the rest)."""
        try:
            self._delete(bucket, key)
        except Exception:
            log.warning("Could not delete object %s of %s %s, stored with wrong bytes", key, self.noun, bucket)

    @abc.abstractmethod
    def _delete(self, bucket: str, key: str) -> None: ...

    @abc.abstractmethod
    def _storage_error(
        self, error: Exception, action: str, bucket: str, key: Optional[str], what: str
    ) -> Optional[StorageError]:
        """The StorageError for an SDK error (``what`` names the object or bucket for messages),
        or None for an error this cloud does not know."""

    # -- shared -------------------------------------------------------------------------------------

    def _check_names(self, bucket: str, *keys: str) -> None:
        try:
            self.names.check_bucket(bucket)
            for key in keys:
                self.names.check_key(key)
        except InvalidName as e:
            raise InvalidObjectName(str(e)) from None

    def _what(self, bucket: Optional[str], key: Optional[str]) -> str:
        if bucket is None:  # the account's bucket listing
            return f"the {self.noun}s of this account"
        return f"object '{key}' in {self.noun} '{bucket}'" if key is not None else f"{self.noun} '{bucket}'"

    @staticmethod
    def _it(bucket: Optional[str]) -> str:
        """The pronoun of ``_what``'s words in a message: the account's buckets are "them"."""
        return "them" if bucket is None else "it"

    def _missing_bucket(self, bucket: str) -> BucketNotFound:
        return BucketNotFound(f"{self.noun.capitalize()} '{bucket}' does not exist")

    def _missing_object(self, bucket: str, key: str) -> ObjectNotFound:
        return ObjectNotFound(f"Object '{key}' does not exist in {self.noun} '{bucket}'")

    def _raise(self, error: Exception, action: str, bucket: Optional[str], key: Optional[str] = None) -> NoReturn:
        """Raise a StorageError saying what failed and why, fit for a user; unknown errors pass as they are."""
        if isinstance(error, StorageError):
            raise error
        if isinstance(error, ChecksumMismatch):  # a file that changed while it was sent
            raise IntegrityError(f"{error}; nothing was kept") from None
        what = self._what(bucket, key)
        mapped = self._storage_error(error, action, bucket, key, what)
        if mapped is None and isinstance(error, OSError):
            mapped = StorageError(f"Could not {action} {what}: {error.strerror or error}")
        if mapped is None:
            raise error
        raise mapped from error

    def _stat_each(self, bucket: str, keys: list[str]) -> list[Optional[ObjectInfo]]:
        if not keys:
            return []
        with ThreadPoolExecutor(min(STAT_WORKERS, len(keys))) as pool:
            return list(pool.map(lambda key: self.stat(bucket, key), keys))


_RETRY_LOCK = threading.Lock()


class _Writer:
    """Writes an object's bytes into its file, in order, hashes them as they pass, and counts them."""

    def __init__(self, fh, digests: Digests, count: Callable[[int], None]) -> None:
        self.fh, self.digests, self.count = fh, digests, count

    def write(self, data: bytes) -> None:
        check_not_stopped()
        self.fh.write(data)
        self.digests.update(data)
        self.count(len(data))


def _ignore(count: int) -> None:
    pass


def pump(
    chunks: Iterable[bytes],
    write: Callable[[bytes], None],
    broken: tuple[type[BaseException], ...],
    final: tuple[type[BaseException], ...] = (),
) -> None:
    """A response body's chunks through ``write``. An error of ``broken`` while reading (not
    ``final`` ones) means the body broke mid-way: BrokenBody, which the download asks again from
    the byte reached. A write's own error (a full disk) is not a broken body."""
    chunks = iter(chunks)
    while True:
        try:
            chunk = next(chunks, None)
        except final:
            raise
        except broken as e:
            raise BrokenBody(f"{type(e).__name__}: {e}") from e
        if chunk is None:
            return
        write(chunk)


def _stoppable_open(path: str, mode: str):
    """A file hashed for sending, as ``open``: its reads stop when the job is stopped."""
    from .cancellation import open_for_sending  # (cancellation imports this module)

    return open_for_sending(path)


def remove_file(path: Optional[str]) -> None:
    """Remove what a failed download left at ``path`` (nothing that looks like the object may stay)."""
    if path is None:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        log.warning("Could not remove %s after a failed download", path)

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
import logging
import os
import tempfile
import threading
import typing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import datetime
from typing import ClassVar, Iterable, NoReturn, Optional, TYPE_CHECKING

from .names import InvalidName, NameRules

if TYPE_CHECKING:
    from .cloud import Cloud

log = logging.getLogger(__name__)

STAT_WORKERS = 16  # parallel HEAD requests for stat_many
LISTING_LIMIT = 10000  # past this many objects under a prefix, stat_many asks key by key instead
MAX_PAGE_SIZE = 1000  # the most any cloud returns in one listing call (S3's MaxKeys, Azure, GCS, Swift)
DELIMITERS = (None, "/")  # a listing is recursive (None) or by folder ("/")


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

    def download(self, bucket: str, key: str, path: str, size_hint: Optional[int] = None) -> int:
        """Stream the object into ``path`` with bounded memory; returns the bytes written. The
        bytes go to a partial file beside ``path``, renamed to it when whole: ``path`` may exist
        before (Galaxy creates its output files), and after a failure neither holds anything that
        looks like the object. ``size_hint``, the size a listing gave, lets a backend choose how
        to move the object; the bytes written are the object's, whatever its size is now."""
        self._check_names(bucket, key)
        directory, name = os.path.split(os.path.abspath(path))
        fd, partial = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
        os.close(fd)
        try:
            written = self._download_into(bucket, key, partial, size_hint)
            check_not_stopped()  # whatever the SDK did meanwhile, a stopped job's output stays empty
            os.replace(partial, path)
        except BaseException as e:
            remove_file(partial)
            remove_file(path)
            if isinstance(e, Exception):
                self._raise(e, "download", bucket, key)
            raise
        return written

    def upload(self, path: str, bucket: str, key: str) -> int:
        """Stream ``path`` into the object; returns its size. A failed upload leaves no object
        and no hidden parts (multipart uploads aborted, blocks uncommitted, segments deleted)."""
        self._check_names(bucket, key)
        try:
            size = os.path.getsize(path)
        except OSError as e:
            raise StorageError(
                f"Cannot read {path} to send it to '{key}' in {self.noun} '{bucket}': {e.strerror}"
            ) from e
        try:
            self._upload(path, size, bucket, key)
        except Exception as e:
            self._raise(e, "upload", bucket, key)
        return size

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

    @abc.abstractmethod
    def _download_into(self, bucket: str, key: str, partial: str, size_hint: Optional[int]) -> int:
        """Write the whole object into the existing file ``partial``; returns the bytes written,
        or raises (a short read included)."""

    @abc.abstractmethod
    def _upload(self, path: str, size: int, bucket: str, key: str) -> None: ...

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

    def _write_stream(self, chunks: Iterable[bytes], partial: str, expected: int, bucket: str, key: str) -> int:
        """Write an object's body into ``partial`` as it streams; returns the bytes written. A body
        that ends short of ``expected`` (the size its response announced) is an error."""
        with open(partial, "wb") as fh:
            for chunk in chunks:
                check_not_stopped()
                fh.write(chunk)
            written = fh.tell()
        if written != expected:
            raise StorageError(
                f"Could not download object '{key}' in {self.noun} '{bucket}': got {written} of {expected} bytes"
            )
        return written

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

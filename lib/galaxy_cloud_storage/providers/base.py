"""The interface the manager and the transfer engine use, whatever the cloud."""

import abc
import logging
import os
import typing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import (
    dataclass,
    fields,
)
from datetime import datetime
from typing import (
    Iterable,
    Optional,
)

from .names import NameRules

log = logging.getLogger(__name__)

STAT_WORKERS = 16  # parallel HEAD requests for stat_many
LISTING_LIMIT = 10000  # past this many objects under a prefix, stat_many asks key by key instead


class JsonCredentials:
    """For the credentials dataclasses: their JSON form, in which they travel to the transfer job
    (its fields, datetimes as ISO 8601), and back."""

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


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class StorageBackend(abc.ABC):
    """One cloud account, reached with one user's short-lived credentials at admin-set endpoints."""

    #: the cloud's rules for bucket and object names (invariant 10)
    names: NameRules

    @abc.abstractmethod
    def check_bucket(self, bucket: str) -> None:
        """Return if the bucket exists and is reachable; raise BucketNotFound or AccessDenied."""

    @abc.abstractmethod
    def stat(self, bucket: str, key: str) -> Optional[ObjectInfo]:
        """The object's size, or None when it does not exist; AccessDenied when not allowed."""

    def list_sizes(self, bucket: str, prefix: str, limit: int) -> Iterable[tuple[str, int]]:
        """Name and size of the objects under ``prefix``, at most ``limit`` of them, paged by the
        server; any error means "cannot list" (stat_many then asks key by key)."""
        raise NotImplementedError

    def stat_many(self, bucket: str, keys: list[str]) -> list[Optional[ObjectInfo]]:
        """``stat`` of each key, in order. One listing under the keys' common prefix answers for
        all of them when it is short (a request's 100 keys in one folder: one call instead of 100);
        otherwise, or where listing is not allowed, each key is asked for. The first key is asked
        for in any case: listing is allowed more often than reading, and a 403 there must not read
        as "missing"."""
        if not keys:
            return []
        wanted, sizes = set(keys), {}
        try:
            listed = 0
            for name, size in self.list_sizes(bucket, os.path.commonprefix(keys), LISTING_LIMIT):
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
        asked = dict(zip(unknown, self._stat_each(bucket, unknown)))
        return [ObjectInfo(key, sizes[key]) if key in sizes else asked[key] for key in keys]

    def _stat_each(self, bucket: str, keys: list[str]) -> list[Optional[ObjectInfo]]:
        if not keys:
            return []
        with ThreadPoolExecutor(min(STAT_WORKERS, len(keys))) as pool:
            return list(pool.map(lambda key: self.stat(bucket, key), keys))

    @abc.abstractmethod
    def download(self, bucket: str, key: str, path: str) -> int:
        """Stream the object into ``path`` with bounded memory; returns the bytes written."""

    @abc.abstractmethod
    def upload(self, path: str, bucket: str, key: str) -> int:
        """Stream ``path`` into the object; a failed multipart upload is aborted, never left behind."""


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

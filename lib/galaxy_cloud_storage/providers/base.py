"""The interface the manager and the transfer engine use, whatever the cloud."""

import abc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

STAT_WORKERS = 16  # parallel HEAD requests for stat_many

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

    @abc.abstractmethod
    def check_bucket(self, bucket: str) -> None:
        """Return if the bucket exists and is reachable; raise BucketNotFound or AccessDenied."""

    @abc.abstractmethod
    def stat(self, bucket: str, key: str) -> Optional[ObjectInfo]:
        """The object's size, or None when it does not exist; AccessDenied when not allowed."""

    def stat_many(self, bucket: str, keys: list[str]) -> list[Optional[ObjectInfo]]:
        """``stat`` of each key, in order; a backend that can list cheaply overrides this."""
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

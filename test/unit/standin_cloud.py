"""A fifth cloud, defined here and nowhere in the plugin: objects as files in a directory.

It shows what adding a cloud takes: this one module (a ``Cloud`` subclass with its settings,
record, naming rules, minting and storage backend) registers itself when it is defined, and the
contract suite (test_unit_storage_contract.py) runs against it unchanged. The "server" is a
directory: a folder per bucket, an object a file named by its percent-encoded key, and a token
per user listing the buckets it may use (``.grants/<token>``).
"""

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, ClassVar, Iterable, Iterator, Optional
from urllib.parse import quote, unquote

from galaxy_cloud_storage.providers.cancellation import open_for_sending
from galaxy_cloud_storage.providers.cloud import Cloud
from galaxy_cloud_storage.providers.integrity import Checksum, Digests, MD5, ObjectChecksums
from galaxy_cloud_storage.providers.names import NameRules
from galaxy_cloud_storage.providers.settings import ProviderAuthzConfig, ProviderSettings, Secret
from galaxy_cloud_storage.providers.storage import (
    AccessDenied,
    BucketInfo,
    JsonCredentials,
    ListedObject,
    ListingPage,
    ObjectInfo,
    StorageBackend,
    StorageError,
)

GRANTS = ".grants"


class DirectorySettings(ProviderSettings):
    root: str = "/nonexistent"
    part_size: int = 4 * 1024 * 1024


class DirectoryAuthzConfig(ProviderAuthzConfig):
    token: Secret

    secret_fields: ClassVar[tuple[str, ...]] = ("token",)
    modes = {"token": None}


class DirectoryNameRules(NameRules):
    cloud = "the directory store"
    dot_segments_allowed = False

    def bucket_problems(self, name: str) -> Iterable[str]:
        if not 3 <= len(name) <= 63 or not self.matches(name, "a-z0-9-"):
            yield "it must be 3 to 63 lowercase letters, digits and hyphens"


@dataclass(frozen=True)
class DirectoryCredentials(JsonCredentials):
    token: str = field(repr=False)

    def usable(self) -> bool:
        return bool(self.token)


class StandinCloud(Cloud[DirectorySettings, DirectoryAuthzConfig]):
    name = "standin"
    names = DirectoryNameRules()

    def mint(self, settings, config, login):  # a cloud in one module: no credentials module beside it
        return DirectoryCredentials(config.token)


class VersionChanged(Exception):
    """The object was replaced since its version was measured (the stand-in's 412)."""


class StoreUnreachable(Exception):
    """The store's directory is not there (the stand-in's "connection refused")."""


class DirectoryStorage(StorageBackend):
    plugin = StandinCloud
    credentials_type = DirectoryCredentials

    def __init__(self, settings: DirectorySettings, credentials: DirectoryCredentials, config: dict):
        super().__init__(credentials)
        self.root = settings.root
        self.token = credentials.token
        self.part_size = settings.part_size

    def _bucket_dir(self, bucket: str) -> str:
        if not os.path.isdir(self.root):
            raise StoreUnreachable()
        directory = os.path.join(self.root, bucket)
        if not os.path.isdir(directory):
            raise FileNotFoundError(bucket)
        granted = os.path.join(self.root, GRANTS, quote(self.token, safe=""))
        if not os.path.exists(granted):
            raise PermissionError(bucket)
        with open(granted) as fh:
            if bucket not in fh.read().split():
                raise PermissionError(bucket)
        return directory

    def _object_path(self, bucket: str, key: str) -> str:
        return os.path.join(self._bucket_dir(bucket), quote(key, safe=""))

    def _check_bucket(self, bucket: str) -> None:
        self._bucket_dir(bucket)

    def _stat(self, bucket: str, key: str) -> Optional[ObjectInfo]:
        path = self._object_path(bucket, key)
        return ObjectInfo(key, os.path.getsize(path)) if os.path.exists(path) else None

    def _list_sizes(self, bucket: str, prefix: str, limit: int) -> Iterator[tuple[str, int]]:
        directory = self._bucket_dir(bucket)
        keys = sorted(unquote(name) for name in os.listdir(directory) if not name.startswith("."))
        for key in [key for key in keys if key.startswith(prefix)][:limit]:
            yield key, os.path.getsize(os.path.join(directory, quote(key, safe="")))

    def _list_buckets(self) -> list[BucketInfo]:
        """The buckets granted to the token; a token the store does not know may list none."""
        if not os.path.isdir(self.root):
            raise StoreUnreachable()
        try:
            with open(os.path.join(self.root, GRANTS, quote(self.token, safe=""))) as fh:
                granted = fh.read().split()
        except FileNotFoundError:
            raise PermissionError(None) from None
        return [BucketInfo(name) for name in sorted(set(granted)) if os.path.isdir(os.path.join(self.root, name))]

    def _list_page(
        self, bucket: str, prefix: str, delimiter: Optional[str], limit: int, continuation: Optional[str]
    ) -> ListingPage:
        """One read of the bucket's directory. The listing's entries (keys, and folders in their
        first key's place) are in name order and unique, so the continuation is the last entry's
        name and the next page the entries after it."""
        directory = self._bucket_dir(bucket)
        keys = sorted(unquote(name) for name in os.listdir(directory) if not name.startswith("."))
        entries: list[tuple[str, bool]] = []  # (name, is a folder)
        for key in keys:
            if not key.startswith(prefix):
                continue
            end = key.find(delimiter, len(prefix)) if delimiter else -1
            entry = (key[: end + 1], True) if end >= 0 else (key, False)
            if entries and entries[-1] == entry:
                continue
            if continuation is None or entry[0] > continuation:
                entries.append(entry)
            if len(entries) > limit:
                break
        page = entries[:limit]
        objects = [ListedObject(name, *self._size_and_time(directory, name)) for name, folder in page if not folder]
        folders = [name for name, folder in page if folder]
        return ListingPage(objects, folders, page[-1][0] if len(entries) > limit else None)

    @staticmethod
    def _size_and_time(directory: str, key: str) -> tuple[int, datetime]:
        status = os.stat(os.path.join(directory, quote(key, safe="")))
        return status.st_size, datetime.fromtimestamp(status.st_mtime, timezone.utc)

    # The store's "server side": an object's MD5 as the store computes it, and its inode as the
    # version a ranged read is conditioned on (an object replaced meanwhile is a new file).
    whole_object_algorithms = (MD5,)

    def _checksums(self, path: str) -> ObjectChecksums:
        if not os.path.exists(path):
            raise KeyError(path)
        with open(path, "rb") as fh:
            md5 = hashlib.file_digest(fh, "md5").digest()
            status = os.fstat(fh.fileno())
        return ObjectChecksums(status.st_size, (Checksum(MD5, md5, "the store's MD5"),), version=status.st_ino)

    def _read_whole(self, bucket: str, key: str, write: Callable[[bytes], None]) -> ObjectChecksums:
        path = self._object_path(bucket, key)
        checksums = self._checksums(path)
        with open(path, "rb") as fh:
            while data := fh.read(self.part_size):
                write(data)
        return checksums

    def _head(self, bucket: str, key: str) -> ObjectChecksums:
        return self._checksums(self._object_path(bucket, key))

    def _read_range(
        self, bucket: str, key: str, checksums: ObjectChecksums, start: int, end: int, write: Callable[[bytes], None]
    ) -> None:
        with open(self._object_path(bucket, key), "rb") as fh:
            if os.fstat(fh.fileno()).st_ino != checksums.version:
                raise VersionChanged(key)
            fh.seek(start)
            remaining = end - start + 1
            while remaining and (data := fh.read(min(self.part_size, remaining))):
                write(data)
                remaining -= len(data)

    def _upload(self, path: str, size: int, bucket: str, key: str, digests: Digests) -> None:
        target = self._object_path(bucket, key)
        fd, partial = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".upload-")
        try:
            with open_for_sending(path) as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, self.part_size)
            os.replace(partial, target)  # the object appears whole, or not at all
        except BaseException:
            os.unlink(partial)
            raise

    def _stored_checksums(self, bucket: str, key: str) -> ObjectChecksums:
        return self._head(bucket, key)

    def _upload_algorithms(self, size: int) -> tuple[str, ...]:
        return (MD5,)

    def _delete(self, bucket: str, key: str) -> None:
        os.unlink(self._object_path(bucket, key))

    def _storage_error(
        self, error: Exception, action: str, bucket: str, key: Optional[str], what: str
    ) -> Optional[StorageError]:
        if isinstance(error, StoreUnreachable):
            return StorageError(f"Could not {action} {what}: the directory store {self.root} is unreachable")
        if isinstance(error, FileNotFoundError) and error.args == (bucket,):
            return self._missing_bucket(bucket)
        if isinstance(error, KeyError):
            return self._missing_object(bucket, key)
        if isinstance(error, VersionChanged):
            return StorageError(f"Could not {action} {what}: it was replaced while being copied; try again")
        if isinstance(error, PermissionError) and error.args == (bucket,):
            return AccessDenied(f"Access to {what} denied: the token may not {action} {self._it(bucket)}")
        return None


class DirectoryStore:
    """The store's own access (its "admin"): buckets, grants, objects behind the plugin's back."""

    def __init__(self, root: str):
        self.root = root
        os.makedirs(os.path.join(root, GRANTS), exist_ok=True)

    def create_bucket(self, name: str) -> str:
        os.makedirs(os.path.join(self.root, name))
        return name

    def grant(self, token: str, bucket: str) -> str:
        with open(os.path.join(self.root, GRANTS, quote(token, safe="")), "a") as fh:
            fh.write(f"{bucket}\n")
        return token

    def put_object(self, bucket: str, key: str, data: bytes) -> None:
        with open(os.path.join(self.root, bucket, quote(key, safe="")), "wb") as fh:
            fh.write(data)

    def get_object(self, bucket: str, key: str) -> bytes:
        try:
            with open(os.path.join(self.root, bucket, quote(key, safe="")), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise KeyError(key) from None

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        keys = (unquote(name) for name in os.listdir(os.path.join(self.root, bucket)) if not name.startswith("."))
        return sorted(key for key in keys if key.startswith(prefix))

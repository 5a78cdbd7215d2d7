"""What a transfer checks about the bytes it moved (invariant 11, docs/design.rst).

Every object's bytes are hashed once, in order, as they stream (``Digests``): a SHA-256 always,
which Galaxy keeps on the dataset, and whatever the cloud keeps for the whole object (MD5, CRC32C,
CRC32, CRC64NVME, a Swift SLO's MD5 of its segments' MD5s). ``ObjectChecksums`` is what the
cloud said about one object; ``verify`` compares the two and says how the bytes were verified, or
why they could not be (S3 keeps no whole-object checksum of a multipart upload without checksums).

The algorithms' names are Galaxy's where Galaxy has them (``MD5``, ``SHA-1``, ``SHA-256``,
``SHA-512``: galaxy.util.hash_util), and the clouds' otherwise.
"""

import base64
import dataclasses
import hashlib
import queue
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import google_crc32c

SHA256 = "SHA-256"
MD5 = "MD5"
SHA1 = "SHA-1"
SHA512 = "SHA-512"
CRC32 = "CRC32"
CRC32C = "CRC32C"
CRC64NVME = "CRC64NVME"
#: the MD5 of the concatenated hex MD5s of an object's segments: a Swift SLO's ETag
SEGMENTS_MD5 = "MD5 of the segments' MD5s"

#: the checksums by the cost of computing them, cheapest first (SHA-256 aside: always computed)
COST_ORDER = (CRC32C, CRC64NVME, CRC32, SHA1, SHA256, SHA512, MD5, SEGMENTS_MD5)

#: Galaxy's hash functions (its dataset hashes), by hashlib's names
GALAXY_HASH_FUNCTIONS = {MD5: "md5", SHA1: "sha1", SHA256: "sha256", SHA512: "sha512"}


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


class _Crc32c:
    def __init__(self) -> None:
        self.checksum = google_crc32c.Checksum()

    def update(self, data) -> None:
        self.checksum.update(data if isinstance(data, bytes) else bytes(data))  # it takes bytes only

    def digest(self) -> bytes:
        return self.checksum.digest()


class _Crc64Nvme:
    """S3's CRC64NVME, from anycrc (C, 7 GiB/s here). Not awscrt, AWS's own: installed, it makes
    botocore sign every request with its CRT signers, which moto's IAM check refused (403 on a
    HEAD) where botocore's own signatures pass."""

    _model = None

    def __init__(self) -> None:
        if _Crc64Nvme._model is None:
            import anycrc

            _Crc64Nvme._model = anycrc.Model("CRC64-NVME")
        self.value = None

    def update(self, data) -> None:
        data = data if isinstance(data, bytes) else bytes(data)
        self.value = self._model.calc(data) if self.value is None else self._model.calc(data, self.value)

    def digest(self) -> bytes:
        value = self.value if self.value is not None else self._model.calc(b"")
        return value.to_bytes(8, "big")


class _SegmentsMd5:
    """A Swift SLO's ETag: the MD5 of its segments' hex MD5s, in order, for the segments' sizes."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = list(sizes)
        self.index, self.filled = 0, 0
        self.segment = hashlib.md5()
        self.hexes: list[str] = []

    def update(self, data) -> None:
        view = memoryview(data)
        while view:
            room = self.sizes[self.index] - self.filled if self.index < len(self.sizes) else len(view)
            self.segment.update(view[:room])
            self.filled += min(room, len(view))
            view = view[room:]
            if self.index < len(self.sizes) and self.filled == self.sizes[self.index]:
                self.hexes.append(self.segment.hexdigest())
                self.segment, self.filled, self.index = hashlib.md5(), 0, self.index + 1

    def digest(self) -> bytes:
        if self.index != len(self.sizes) or self.filled:
            return b""  # the bytes did not fit the segments: no match possible
        return hashlib.md5("".join(self.hexes).encode()).digest()


def _hasher(algorithm: str, segments: Optional[Sequence[int]]):
    if algorithm in GALAXY_HASH_FUNCTIONS:
        return hashlib.new(GALAXY_HASH_FUNCTIONS[algorithm])
    if algorithm == CRC32:
        return _Crc32()
    if algorithm == CRC32C:
        return _Crc32c()
    if algorithm == CRC64NVME:
        return _Crc64Nvme()
    if algorithm == SEGMENTS_MD5:
        return _SegmentsMd5(segments or ())
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


class _HashingThread:
    """A hasher fed through a short queue by a thread of its own: hashlib releases the GIL on large
    buffers, so the hashes of one stream run side by side, beside the threads that read it. The
    queue holds one buffer: with eight, a reader ahead of a slow hasher held 10 MiB of 1 MiB
    blocks (seen in CI on 2 busy cores); with one, at most the buffer read, the one queued and the
    one being hashed are alive, and the hashers still run beside the reader."""

    def __init__(self, hasher) -> None:
        self.hasher = hasher
        self.queue: "queue.Queue" = queue.Queue(maxsize=1)
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="cloud-hash", daemon=True)
        self.thread.start()
        self.finished = False

    def _run(self) -> None:
        while (data := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.hasher.update(data)
                except BaseException as e:  # said when the digest is asked for
                    self.error = e

    def update(self, data) -> None:
        self.queue.put(data)

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.queue.put(None)
            self.thread.join()

    def digest(self) -> bytes:
        self.finish()
        if self.error is not None:
            raise self.error
        return self.hasher.digest()

    @property
    def hexes(self) -> list[str]:
        self.finish()
        return self.hasher.hexes


class Digests:
    """The checksums of one stream of bytes, fed in order; SHA-256 always among them. With
    ``threaded``, each is computed by a thread of its own (for a large object with two or more: on
    Azure and Swift, MD5 and SHA-256, 0.6 and 1.4 GiB/s here, side by side); ``close`` ends them.
    What ``update`` is given must not change afterwards."""

    def __init__(
        self, algorithms: Iterable[str] = (), segments: Optional[Sequence[int]] = None, threaded: bool = False
    ) -> None:
        names = dict.fromkeys([SHA256, *algorithms])
        self._hashers = {name: _hasher(name, segments) for name in names}
        if threaded and len(names) > 1:
            self._hashers = {name: _HashingThread(hasher) for name, hasher in self._hashers.items()}
        self.size = 0

    def update(self, data) -> None:
        for hasher in self._hashers.values():
            hasher.update(data)
        self.size += len(data)

    def digest(self, algorithm: str) -> bytes:
        return self._hashers[algorithm].digest()

    def hexdigest(self, algorithm: str) -> str:
        return self.digest(algorithm).hex()

    @property
    def sha256(self) -> str:
        return self.hexdigest(SHA256)

    def __contains__(self, algorithm: str) -> bool:
        return algorithm in self._hashers

    def segment_md5s(self) -> list[str]:
        """The hex MD5 of each segment (made with ``segments``, once it has seen the whole file)."""
        return list(self._hashers[SEGMENTS_MD5].hexes)

    def close(self) -> None:
        """End the hashing threads (a download that failed: nobody will ask for the digests)."""
        for hasher in self._hashers.values():
            if isinstance(hasher, _HashingThread):
                hasher.finish()


def digest_file(path: str, algorithms: Iterable[str] = (), segments: Optional[Sequence[int]] = None,
                block: int = 1024 * 1024, reader=None) -> Digests:  # fmt: skip
    """The checksums of a file, read once in blocks (``reader``: how to open it), side by side."""
    digests = Digests(algorithms, segments, threaded=True)
    try:
        with (reader or open)(path, "rb") as fh:
            while data := fh.read(block):
                digests.update(data)
    except BaseException:
        digests.close()
        raise
    return digests


@dataclass(frozen=True)
class Checksum:
    """A checksum of a whole object as its cloud (or Galaxy) keeps it."""

    algorithm: str
    digest: bytes
    #: where it came from, for messages: "S3's ChecksumCRC64NVME", "the ETag of a single-part upload"
    source: str
    #: written by whoever uploaded the object (its ``sha256`` metadata), not computed by the cloud
    from_metadata: bool = False

    @classmethod
    def from_base64(cls, algorithm: str, value, source: str, **kwargs) -> Optional["Checksum"]:
        try:
            return cls(algorithm, base64.b64decode(value, validate=True), source, **kwargs)
        except (ValueError, TypeError):
            return None  # not a checksum of this kind (an S3 composite "...-3"): nothing to check

    @classmethod
    def from_hex(cls, algorithm: str, value, source: str, **kwargs) -> Optional["Checksum"]:
        try:
            return cls(algorithm, bytes.fromhex(str(value).strip().strip('"')), source, **kwargs)
        except ValueError:
            return None

    @classmethod
    def metadata_sha256(cls, value, header: str) -> Optional["Checksum"]:
        """The SHA-256 an upload of this plugin (or anyone) put into the object's metadata."""
        if not value:
            return None
        return cls.from_hex(SHA256, value, f"sha256 metadata, {header}", from_metadata=True)


@dataclass(frozen=True)
class ObjectChecksums:
    """What the cloud said about one object's bytes, before or as they were read."""

    #: None where the response did not say
    size: Optional[int]
    checksums: tuple[Checksum, ...] = ()
    #: why the cloud keeps no whole-object checksum of this object, for the job's output
    unverifiable: Optional[str] = None
    #: a Swift SLO's segment sizes, for SEGMENTS_MD5
    segments: Optional[tuple[int, ...]] = None
    #: what a ranged read of this very version is conditioned on (an ETag, a generation)
    version: Any = field(default=None, compare=False)

    @property
    def algorithms(self) -> list[str]:
        return [checksum.algorithm for checksum in self.checksums]

    def cheapest(self) -> "ObjectChecksums":
        """The checksums worth computing for a large object: any SHA-256 (computed anyway) and the
        cheapest one other. On S3, a CRC instead of the ETag's MD5 as well: MD5 runs at 0.6 GiB/s
        here, CRC32 at 2, CRC32C and CRC64NVME at 7 to 11, SHA-256 at 1.4."""
        sha256 = [checksum for checksum in self.checksums if checksum.algorithm == SHA256]
        others = sorted(
            (checksum for checksum in self.checksums if checksum.algorithm != SHA256),
            key=lambda checksum: COST_ORDER.index(checksum.algorithm),
        )
        return dataclasses.replace(self, checksums=tuple(sha256 + others[:1]))


@dataclass(frozen=True)
class Verified:
    """How one object's bytes were checked, for the job's output and the dataset's hash."""

    sha256: str
    #: the checksums the bytes matched, each as "CRC32C (S3's ChecksumCRC32C)"
    matched: tuple[str, ...] = ()
    #: why none could be checked
    unverifiable: Optional[str] = None

    def describe(self) -> str:
        if self.matched:
            return "verified: " + ", ".join(self.matched)
        return f"not verified: {self.unverifiable or 'the cloud keeps no checksum of it'}"


class ChecksumMismatch(Exception):
    """The bytes read do not match a checksum; the message names the object, expected and computed."""


def verify(what: str, checksums: ObjectChecksums, digests: Digests) -> Verified:
    """Compare the bytes' ``digests`` with every checksum the cloud gave; ChecksumMismatch at the
    first that differs. ``what`` names the object in the message."""
    matched = []
    if checksums.size is not None and checksums.size != digests.size:
        raise ChecksumMismatch(
            f"{what} is not the size it should be: expected {checksums.size} bytes, got {digests.size}"
        )
    for checksum in checksums.checksums:
        computed = digests.digest(checksum.algorithm)
        if computed != checksum.digest:
            raise ChecksumMismatch(
                f"{what} does not match its {checksum.source}: expected {checksum.algorithm} "
                f"{checksum.digest.hex()}, computed {computed.hex() or '(the bytes do not fit its segments)'}"
            )
        matched.append(f"{checksum.algorithm} ({checksum.source})")
    return Verified(digests.sha256, tuple(matched), None if matched else checksums.unverifiable)


class VerifyingReader:
    """A file being sent, as an SDK that reads it once and in order sees it: hashed as it is read,
    and, at its last byte, a SHA-256 other than ``sha256`` (the file changed since it was hashed)
    raises ChecksumMismatch, which stops the upload before it completes. Not seekable, so that the
    SDK reads it in order (azure-storage-blob reads a seekable stream's blocks from several threads)."""

    def __init__(self, fh, sha256: str, size: int, what: str) -> None:
        self.fh, self.expected, self.size, self.what = fh, sha256, size, what
        self.hash = hashlib.sha256()
        self.read_so_far = 0

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.hash.update(data)
        self.read_so_far += len(data)
        if self.read_so_far >= self.size and (data or size != 0 or self.size == 0):
            self._check()
        return data

    def _check(self) -> None:
        if self.read_so_far != self.size or self.hash.hexdigest() != self.expected:
            raise ChecksumMismatch(
                f"{self.what} changed while it was being sent: expected SHA-256 {self.expected} "
                f"({self.size} bytes), read {self.hash.hexdigest()} ({self.read_so_far} bytes)"
            )

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return True


def galaxy_hashes(hashes: Iterable[dict]) -> tuple[Checksum, ...]:
    """A dataset's Galaxy hashes (``{"hash_function", "hash_value"}``) that can be checked here."""
    found = []
    for entry in hashes:
        function, value = entry.get("hash_function"), entry.get("hash_value")
        if function in GALAXY_HASH_FUNCTIONS and value:
            found.append(Checksum.from_hex(function, value, f"Galaxy {function} hash"))
    return tuple(checksum for checksum in found if checksum is not None)

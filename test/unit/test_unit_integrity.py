"""providers.integrity: the checksums a transfer computes and how it compares them (pure Python;
each cloud's use of them is test_unit_storage_integrity.py's)."""

import base64
import hashlib
import os
import threading
import time
import zlib

import google_crc32c
import pytest

from galaxy_cloud_storage.providers.integrity import (
    _HashingThread,
    Checksum,
    ChecksumMismatch,
    CRC32,
    CRC32C,
    CRC64NVME,
    Digests,
    galaxy_hashes,
    MD5,
    ObjectChecksums,
    SEGMENTS_MD5,
    SHA1,
    SHA256,
    SHA512,
    verify,
    VerifyingReader,
)

DATA = os.urandom(3 * 1024 * 1024 + 17)
ALL = (MD5, SHA1, SHA512, CRC32, CRC32C, CRC64NVME)


def fed(digests: Digests, data: bytes = DATA, piece: int = 100_000) -> Digests:
    for start in range(0, len(data), piece):
        digests.update(bytearray(data[start : start + piece]))  # SDKs and the ranged reader give bytearrays too
    return digests


def test_a_lagging_hashing_thread_holds_the_reader_back_instead_of_piling_up_buffers():
    """One buffer hashed, one queued, and the reader waits: in CI a queue of eight 1 MiB blocks
    made a 40 MiB upload hold 10 MiB."""
    release = threading.Event()

    class SlowHasher:
        def update(self, data):
            release.wait(10)

        def digest(self):
            return b""

    hashing = _HashingThread(SlowHasher())
    handed = []

    def read():
        for block in range(4):
            hashing.update(b"block")
            handed.append(block)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.3)
    assert handed == [0, 1]
    release.set()
    reader.join(5)
    hashing.finish()
    assert handed == [0, 1, 2, 3]


@pytest.mark.parametrize("threaded", [False, True])
def test_every_algorithm_matches_its_reference_in_pieces_and_threaded_alike(threaded):
    digests = fed(Digests(ALL, threaded=threaded))
    assert digests.size == len(DATA)
    assert digests.sha256 == hashlib.sha256(DATA).hexdigest()
    assert digests.digest(MD5) == hashlib.md5(DATA).digest()
    assert digests.digest(SHA1) == hashlib.sha1(DATA).digest()
    assert digests.digest(SHA512) == hashlib.sha512(DATA).digest()
    assert digests.digest(CRC32) == zlib.crc32(DATA).to_bytes(4, "big")
    assert digests.digest(CRC32C) == google_crc32c.Checksum(DATA).digest()
    digests.close()


def test_crc64nvme_is_s3s():
    """The check value of CRC-64/NVME ("123456789"), and an empty object's."""
    digests = Digests([CRC64NVME])
    digests.update(b"12345")
    digests.update(b"6789")
    assert digests.hexdigest(CRC64NVME) == "ae8b14860a799888"
    assert Digests([CRC64NVME]).hexdigest(CRC64NVME) == "0000000000000000"


@pytest.mark.parametrize("threaded", [False, True])
def test_a_swift_slos_etag_is_the_md5_of_its_segments_md5s(threaded):
    sizes = [1024 * 1024, 1024 * 1024, len(DATA) - 2 * 1024 * 1024]
    digests = fed(Digests([SEGMENTS_MD5], segments=sizes, threaded=threaded), piece=300_001)
    parts, start = [], 0
    for size in sizes:
        parts.append(hashlib.md5(DATA[start : start + size]).hexdigest())
        start += size
    assert digests.segment_md5s() == parts
    assert digests.digest(SEGMENTS_MD5) == hashlib.md5("".join(parts).encode()).digest()
    short = fed(Digests([SEGMENTS_MD5], segments=sizes + [1]))
    assert short.digest(SEGMENTS_MD5) == b""  # bytes that do not fit the segments match nothing


def test_verify_names_the_object_the_checksum_expected_and_computed():
    good = Checksum(MD5, hashlib.md5(DATA).digest(), "Content-MD5")
    crc = Checksum.from_base64(CRC32C, base64.b64encode(google_crc32c.Checksum(DATA).digest()).decode(), "GCS crc32c")
    digests = fed(Digests([MD5, CRC32C]))
    verified = verify("Object 'k'", ObjectChecksums(len(DATA), (good, crc)), digests)
    assert verified.matched == ("MD5 (Content-MD5)", "CRC32C (GCS crc32c)")
    assert verified.describe().startswith("verified: MD5 (Content-MD5)")

    wrong = Checksum(MD5, hashlib.md5(b"other").digest(), "Content-MD5")
    with pytest.raises(ChecksumMismatch) as raised:
        verify("Object 'k' in bucket 'b'", ObjectChecksums(len(DATA), (wrong,)), digests)
    message = str(raised.value)
    assert message.startswith("Object 'k' in bucket 'b' does not match its Content-MD5: expected MD5 ")
    assert hashlib.md5(b"other").hexdigest() in message and hashlib.md5(DATA).hexdigest() in message
    with pytest.raises(ChecksumMismatch, match="expected 5 bytes, got"):
        verify("Object 'k'", ObjectChecksums(5, ()), digests)


def test_nothing_to_compare_is_said_not_hidden():
    verified = verify(
        "Object 'k'", ObjectChecksums(len(DATA), (), "S3 keeps no whole-object checksum of it"), fed(Digests())
    )
    assert verified.matched == () and verified.describe() == "not verified: S3 keeps no whole-object checksum of it"


def test_the_cheapest_checksum_is_computed_beside_any_sha256():
    md5 = Checksum(MD5, b"\0" * 16, "ETag")
    crc32 = Checksum(CRC32, b"\0" * 4, "S3 ChecksumCRC32")
    crc32c = Checksum(CRC32C, b"\0" * 4, "S3 ChecksumCRC32C")
    sha256 = Checksum.metadata_sha256("00" * 32, "x-amz-meta-sha256")
    cheapest = ObjectChecksums(1, (md5, sha256, crc32, crc32c)).cheapest()
    assert cheapest.checksums == (sha256, crc32c)
    assert ObjectChecksums(1, (md5,)).cheapest().checksums == (md5,)


def test_composite_and_odd_values_are_no_checksum_at_all():
    assert Checksum.from_base64(CRC32, "AAAAAA==-3", "S3 ChecksumCRC32") is None  # a multipart's parts
    assert Checksum.from_hex(MD5, "not hex", "ETag") is None
    assert Checksum.metadata_sha256(None, "x") is None


def test_galaxy_hashes_that_can_be_checked():
    found = galaxy_hashes(
        [
            {"hash_function": "SHA-256", "hash_value": "AB" * 32},
            {"hash_function": "MD5", "hash_value": "cd" * 16, "extra_files_path": None},
            {"hash_function": "BLAKE3", "hash_value": "00"},
            {"hash_function": "SHA-1", "hash_value": "zz"},
        ]
    )
    assert [(c.algorithm, c.digest.hex(), c.source) for c in found] == [
        (SHA256, "ab" * 32, "Galaxy SHA-256 hash"),
        (MD5, "cd" * 16, "Galaxy MD5 hash"),
    ]


def test_a_file_that_changed_since_it_was_hashed_stops_the_reader_at_its_end(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(DATA)
    with open(path, "rb") as fh:
        reader = VerifyingReader(fh, hashlib.sha256(DATA).hexdigest(), len(DATA), "The file")
        assert not reader.seekable()
        assert b"".join(iter(lambda: reader.read(1 << 20), b"")) == DATA
    with open(path, "rb") as fh:
        reader = VerifyingReader(fh, hashlib.sha256(b"before").hexdigest(), len(DATA), "The file sent to 'k'")
        with pytest.raises(ChecksumMismatch, match="The file sent to 'k' changed while it was being sent"):
            while reader.read(1 << 20):
                pass

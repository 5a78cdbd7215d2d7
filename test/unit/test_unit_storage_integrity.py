"""Invariant 11, what a transfer copies is verified: each cloud's backend against its real local
server (backend_cases.py) and the stand-in cloud. Every download is hashed as it streams and
checked against the cloud's own whole-object checksum; every upload declares the checksum its
cloud verifies on receipt, carries its SHA-256 in the object's metadata, refuses a file that does
not match its dataset's Galaxy hash, and compares what the cloud stored with what it read.

Faults on the wire (resets, 503s, corrupted bodies) are test_unit_storage_faults.py's.
"""

import hashlib
import os

import pytest
from file_bytes import file_sha256, sha256, write

from galaxy_cloud_storage.providers.integrity import MD5, SHA256
from galaxy_cloud_storage.providers.storage import AccessDenied, IntegrityError, StorageError

pytest_plugins = ["azure_fixtures", "swift_fixtures", "backend_cases"]

MiB = 1024 * 1024


def galaxy_hash(function: str, data: bytes) -> dict:
    name = {SHA256: "sha256", MD5: "md5"}[function]
    return {"hash_function": function, "hash_value": hashlib.new(name, data).hexdigest()}


@pytest.mark.parametrize("size", [1000, 12 * MiB], ids=["one part", "several parts"])
def test_what_is_sent_is_verified_and_comes_back_verified(case, tmp_path, size):
    """Up in one or several parts (the case's small parts), and down by ranges or in one request:
    both ways say which checksums the bytes matched, and the SHA-256 is the data's."""
    storage = case.storage(**case.small_parts)
    data = os.urandom(size)
    sent = storage.upload(write(tmp_path / "source", data), case.bucket, "verified.bin", [galaxy_hash(SHA256, data)])
    assert sent.verified.sha256 == sha256(data)
    assert sent.verified.matched, sent.verified  # the stored object's own checksum, compared
    assert not any("metadata" in matched for matched in sent.verified.matched)  # its own claim proves nothing

    for hint in (None, size):
        got = storage.download(case.bucket, "verified.bin", str(tmp_path / "target"), size_hint=hint)
        assert got.size == size and got.verified.sha256 == sha256(data)
        assert got.verified.matched and got.verified.unverifiable is None, got.verified
        assert file_sha256(tmp_path / "target") == sha256(data)


def test_an_upload_keeps_its_sha256_in_the_objects_metadata(case, tmp_path):
    storage = case.storage(**case.small_parts)
    data = os.urandom(12 * MiB)
    storage.upload(write(tmp_path / "source", data), case.bucket, "with-metadata.bin")
    stored = storage._head(case.bucket, "with-metadata.bin")
    from_metadata = [checksum for checksum in stored.checksums if checksum.from_metadata]
    if case.name == "standin":  # a directory keeps no metadata
        assert from_metadata == []
        return
    assert [(c.algorithm, c.digest.hex()) for c in from_metadata] == [(SHA256, sha256(data))]


def test_an_object_put_by_others_is_verified_by_the_clouds_own_checksum(case, tmp_path):
    data = b"put by another tool\n" * 100
    case.admin.put(case.bucket, "theirs.txt", data)
    got = case.storage().download(case.bucket, "theirs.txt", str(tmp_path / "target"), size_hint=len(data))
    assert got.verified.sha256 == sha256(data)
    assert got.verified.matched, got.verified.describe()


def test_a_file_that_does_not_match_its_galaxy_hash_is_not_sent(case, tmp_path):
    """A dataset corrupted on Galaxy's disk: its file no longer has the hash Galaxy recorded."""
    storage = case.storage(**case.small_parts)
    recorded = os.urandom(6 * MiB)
    on_disk = bytearray(recorded)
    on_disk[4 * MiB] ^= 0x01
    source = write(tmp_path / "dataset.dat", bytes(on_disk))

    with pytest.raises(IntegrityError) as raised:
        storage.upload(source, case.bucket, "corrupt.bin", [galaxy_hash(MD5, recorded), galaxy_hash(SHA256, recorded)])
    message = str(raised.value)
    assert "'corrupt.bin'" in message and "not what Galaxy recorded" in message and "nothing was sent" in message
    assert (
        galaxy_hash(MD5, recorded)["hash_value"] in message
        and galaxy_hash(MD5, bytes(on_disk))["hash_value"] in message
    )
    assert "corrupt.bin" not in case.admin.keys(case.bucket)

    # The same file with its own hashes goes (an unknown function is not Galaxy's to check).
    fine = [galaxy_hash(SHA256, bytes(on_disk)), {"hash_function": "BLAKE3", "hash_value": "00"}]
    assert storage.upload(source, case.bucket, "corrupt.bin", fine).verified.sha256 == sha256(bytes(on_disk))


@pytest.mark.parametrize("size", [1000, 12 * MiB], ids=["one part", "several parts"])
def test_a_file_that_changes_while_it_is_sent_leaves_no_object(case, tmp_path, monkeypatch, size):
    """The file is hashed, then sent: bytes that changed in between are refused by the cloud (the
    declared checksum), stopped before the upload completes (Azure's blocks), or found different in
    what the cloud stored, and that object deleted (moto and fake-gcs-server check no declared
    checksum)."""
    storage = case.storage(**case.small_parts)
    source = write(tmp_path / "dataset.dat", os.urandom(size))
    send = storage._upload

    def changed_then_sent(path, *args):
        with open(path, "r+b") as fh:
            fh.seek(size // 2)
            fh.write(b"\x00\xff")  # same size, other bytes
        return send(path, *args)

    monkeypatch.setattr(storage, "_upload", changed_then_sent)
    with pytest.raises(IntegrityError, match="'changing.bin'|changing.bin"):
        storage.upload(source, case.bucket, "changing.bin")
    assert "changing.bin" not in case.admin.keys(case.bucket)


def test_an_object_replaced_while_its_ranges_are_read_fails_and_leaves_no_file(case, tmp_path, monkeypatch):
    """Each range is read from the version measured first: a replaced object is an error, never a
    file of two versions."""
    storage = case.storage(**case.small_parts)
    storage.range_size = MiB
    case.admin.put(case.bucket, "replaced.bin", os.urandom(5 * MiB))
    read_range, calls = storage._read_range, []

    def replaced_after_the_first_range(bucket, key, *args):
        calls.append(key)
        if len(calls) == 2:
            case.admin.put(case.bucket, "replaced.bin", os.urandom(5 * MiB))
        return read_range(bucket, key, *args)

    monkeypatch.setattr(storage, "_read_range", replaced_after_the_first_range)
    target = tmp_path / "dataset.dat"
    target.write_bytes(b"")
    with pytest.raises(StorageError, match="'replaced.bin'.*(replaced while being copied|does not match)"):
        storage.download(case.bucket, "replaced.bin", str(target))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("hint", [None, 1000], ids=["by ranges", "in one request"])
def test_bytes_that_differ_from_the_clouds_checksum_fail_naming_expected_and_computed(
    case, tmp_path, monkeypatch, hint
):
    """A byte flipped between the cloud and the file (the wire's corruption is the faults test's):
    the object fails, naming itself, the checksum expected and the one computed; no file is left."""
    storage = case.storage()
    data = os.urandom(1000)
    case.admin.put(case.bucket, "flipped.bin", data)
    read_whole, read_range = storage._read_whole, storage._read_range

    def flipping(write):
        first = []

        def flipped(chunk):
            if not first:
                first.append(True)
                chunk = bytes([chunk[0] ^ 0x01]) + bytes(chunk[1:])
            write(chunk)

        return flipped

    monkeypatch.setattr(storage, "_read_whole", lambda bucket, key, write: read_whole(bucket, key, flipping(write)))
    monkeypatch.setattr(storage, "_read_range", lambda *args: read_range(*args[:-1], flipping(args[-1])))
    target = tmp_path / "dataset.dat"
    with pytest.raises(IntegrityError) as raised:
        storage.download(case.bucket, "flipped.bin", str(target), size_hint=hint)
    message = str(raised.value)
    assert f"Object 'flipped.bin' in {case.noun} '{case.bucket}' does not match its" in message, message
    assert "expected" in message and "computed" in message and "nothing of it was kept" in message
    assert os.listdir(tmp_path) == []


def test_a_send_into_a_bucket_it_may_not_read_back_is_not_failed(case, tmp_path, monkeypatch):
    """A drop box: credentials that may write an object but not read it. The cloud checked the
    declared checksum on receipt; the send says it could not compare, and succeeds."""
    storage = case.storage()
    data = os.urandom(1000)

    def may_not_read(bucket, key):
        raise AccessDenied(f"Access to object '{key}' denied")

    monkeypatch.setattr(storage, "_stored_checksums", may_not_read)
    sent = storage.upload(write(tmp_path / "source", data), case.bucket, "dropped.bin")
    assert sent.verified.sha256 == sha256(data) and sent.verified.matched == ()
    assert "may not read it back" in sent.verified.describe()
    assert case.admin.get(case.bucket, "dropped.bin") == data

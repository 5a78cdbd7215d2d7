"""providers.openstack.storage.SwiftStorage against a real Swift cluster on 127.0.0.1
(galaxy_cloud_storage_testing/swift_aio.py): what only Swift has. What every backend does is in
test_unit_storage_contract.py.

Tokens come straight from the cluster's tempauth (not through providers.openstack.credentials, tested on its own):
test:tester administers the account; test:reader reaches only the containers shared with it.
"""

import os
import threading
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from file_bytes import file_sha256, random_file
from swift_fixtures import v1_token

from galaxy_cloud_storage.providers.openstack import OpenStackSettings
from galaxy_cloud_storage.providers.openstack.storage import SwiftCredentials, SwiftStorage
from galaxy_cloud_storage.providers.settings import MiB
from galaxy_cloud_storage.providers.storage import AccessDenied, BucketNotFound, ObjectInfo, RANGES_AHEAD, StorageError
from galaxy_cloud_storage_testing import swift_aio

ODD_KEY = "dir/sub dir/ünïcødé ✓ file.txt"
SETTINGS = OpenStackSettings()  # the backend needs only ca_bundle from the admin's settings

pytest_plugins = ["swift_fixtures"]  # the session's Swift cluster: swift, swift_admin


def storage_as(swift, user=swift_aio.ADMIN_USER, key=swift_aio.ADMIN_KEY, **settings) -> SwiftStorage:
    storage_url, token = v1_token(swift, user, key)
    return SwiftStorage(SETTINGS.model_copy(update=settings), SwiftCredentials(storage_url, token), {})


@pytest.fixture
def container(swift_admin):
    """A fresh container for each test (the cluster lives for the session)."""
    return swift_admin.create_bucket(f"c-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def storage(swift):
    return storage_as(swift)


def dead_storage_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1/AUTH_test"  # closed again: nothing listens


# --- containers --------------------------------------------------------------------------------


def test_check_bucket_shared_with_the_user(swift, swift_admin, container):
    swift_admin.share(container)
    storage_as(swift, swift_aio.READER_USER, swift_aio.READER_KEY).check_bucket(container)


def test_refused_token_is_access_denied(swift, container):
    storage_url, _ = v1_token(swift, swift_aio.ADMIN_USER, swift_aio.ADMIN_KEY)
    storage = SwiftStorage(SETTINGS, SwiftCredentials(storage_url, "AUTH_tk" + "0" * 32), {})
    with pytest.raises(AccessDenied, match="HTTP 401, the token was refused or has expired"):
        storage.check_bucket(container)


# --- objects -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a/b/c/", "/leading-slash"])
def test_round_trip_of_keys_swift_holds_as_they_are(storage, swift_admin, container, tmp_path, key):
    source = random_file(tmp_path / "source", 300_000)
    assert storage.upload(str(source), container, key).size == 300_000
    assert swift_admin.get_object(container, key) == source.read_bytes()
    assert storage.stat(container, key) == ObjectInfo(key, 300_000)
    target = tmp_path / "target"
    assert storage.download(container, key, str(target)).size == 300_000
    assert target.read_bytes() == source.read_bytes()
    assert [name for name in os.listdir(tmp_path) if name.startswith(".swift-download-")] == []


def test_large_object_goes_up_as_slo_in_a_segments_container(swift, swift_admin, container, tmp_path):
    storage = storage_as(swift, segment_size=4 * MiB)
    source = random_file(tmp_path / "big", 40 * MiB + 123)
    assert storage.upload(str(source), container, "big.bin").size == 40 * MiB + 123
    # The user's listing holds the object alone; its 11 segments live in <container>_segments.
    assert swift_admin.list_keys(container) == ["big.bin"]
    segments = swift_admin.list_keys(f"{container}_segments")
    assert len(segments) == 11 and all(name.startswith("big.bin/slo/") for name in segments)
    head = swift_admin.connection().head_object(container, "big.bin")
    assert head.get("x-static-large-object") == "True"
    assert storage.stat(container, "big.bin") == ObjectInfo("big.bin", 40 * MiB + 123)
    assert storage.stat_many(container, ["big.bin"]) == [ObjectInfo("big.bin", 40 * MiB + 123)]
    target = tmp_path / "copy"
    assert storage.download(container, "big.bin", str(target)).size == 40 * MiB + 123
    assert file_sha256(target) == file_sha256(source)


def test_memory_stays_bounded_for_a_large_object(storage, container, tmp_path):
    """Default 16 MiB segments: an upload holds no segment (nor the object) in memory; a download
    holds at most RANGES_AHEAD ranges, read ahead of the one being written (1 MiB ranges here)."""
    source = random_file(tmp_path / "big", 40 * MiB)
    storage.range_size = MiB
    tracemalloc.start()
    try:
        storage.upload(str(source), container, "big")
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        storage.download(container, "big", str(tmp_path / "copy"))
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert upload_peak < 4 * MiB, upload_peak
    assert download_peak < (RANGES_AHEAD + 3) * MiB, download_peak  # and a chunk being read per range
    assert file_sha256(tmp_path / "copy") == file_sha256(source)


def test_large_upload_into_missing_container_creates_nothing(swift, swift_admin, tmp_path):
    storage = storage_as(swift, segment_size=1 * MiB)
    random_file(tmp_path / "f", 3 * MiB)
    with pytest.raises(BucketNotFound):
        storage.upload(str(tmp_path / "f"), "never-made", "f")
    assert not swift_admin.container_exists("never-made_segments")


# --- failures leave nothing behind ---------------------------------------------------------------


def test_failed_manifest_leaves_no_object_and_no_segments(swift, swift_admin, container, tmp_path):
    """The reader may write the segments container but only read the container itself: every
    segment goes up, the manifest is refused (403), and the segments are deleted again."""
    swift_admin.create_bucket(f"{container}_segments")
    swift_admin.share(f"{container}_segments")
    swift_admin.connection().post_container(container, {"X-Container-Read": swift_aio.READER_USER})
    reader = storage_as(swift, swift_aio.READER_USER, swift_aio.READER_KEY, segment_size=1 * MiB)
    random_file(tmp_path / "big", 9 * MiB)
    with pytest.raises(AccessDenied, match=f"Access to object 'big' in container '{container}'"):
        reader.upload(str(tmp_path / "big"), container, "big")
    assert swift_admin.list_keys(container) == []
    assert swift_admin.list_keys(f"{container}_segments") == []


def test_failed_segments_leave_no_object_and_no_segments(swift, swift_admin, container, tmp_path):
    """The segments container refuses the segments (a container quota smaller than one): Swift
    answers 413 while other segments are in flight; no manifest, no segment is left."""
    swift_admin.create_bucket(f"{container}_segments")
    swift_admin.connection().post_container(f"{container}_segments", {"X-Container-Meta-Quota-Bytes": str(MiB // 2)})
    storage = storage_as(swift, segment_size=1 * MiB)
    random_file(tmp_path / "big", 20 * MiB)
    with pytest.raises(
        StorageError, match=f"Could not upload object 'big' in container '{container}': Swift answered HTTP 413"
    ):
        storage.upload(str(tmp_path / "big"), container, "big")
    assert swift_admin.list_keys(container) == []
    assert swift_admin.list_keys(f"{container}_segments") == []


def test_failed_small_upload_leaves_no_object(storage, swift_admin, container, tmp_path):
    swift_admin.connection().post_container(container, {"X-Container-Meta-Quota-Bytes": "10"})
    (tmp_path / "f").write_bytes(b"more than ten bytes")
    with pytest.raises(StorageError, match="HTTP 413"):
        storage.upload(str(tmp_path / "f"), container, "f")
    assert swift_admin.list_keys(container) == []


def test_segments_need_write_access_to_the_segments_container(swift, swift_admin, container, tmp_path):
    swift_admin.share(container)  # the reader may write the container, not <container>_segments
    reader = storage_as(swift, swift_aio.READER_USER, swift_aio.READER_KEY, segment_size=1 * MiB)
    random_file(tmp_path / "f", 2 * MiB + 1)
    with pytest.raises(AccessDenied, match="or its segments container"):
        reader.upload(str(tmp_path / "f"), container, "f")
    assert swift_admin.list_keys(container) == []


# --- two users in one process --------------------------------------------------------------------


def test_two_users_credentials_stay_separate_when_used_at_once(swift, swift_admin, container, tmp_path):
    """The admin writes a private container while the reader, at the same time and in the same
    process, is refused there and writes its shared one: had one backend used the other's token,
    a reader write would succeed or an admin write fail."""
    shared = swift_admin.create_bucket(f"{container}-shared")
    swift_admin.share(shared)
    admin = storage_as(swift)
    reader = storage_as(swift, swift_aio.READER_USER, swift_aio.READER_KEY)
    (tmp_path / "f").write_bytes(b"payload")
    start = threading.Barrier(8)

    def as_admin(i):
        start.wait()
        return admin.upload(str(tmp_path / "f"), container, f"admin-{i}")

    def as_reader(i):
        start.wait()
        reader.upload(str(tmp_path / "f"), shared, f"reader-{i}")
        try:
            reader.upload(str(tmp_path / "f"), container, f"intruder-{i}")
        except AccessDenied:
            return "denied"
        return "written"

    with ThreadPoolExecutor(8) as pool:
        admin_results = [pool.submit(as_admin, i) for i in range(4)]
        reader_results = [pool.submit(as_reader, i) for i in range(4)]
        assert [f.result().size for f in admin_results] == [7] * 4
        assert [f.result() for f in reader_results] == ["denied"] * 4
    assert swift_admin.list_keys(container) == [f"admin-{i}" for i in range(4)]
    assert swift_admin.list_keys(shared) == [f"reader-{i}" for i in range(4)]


def test_overwriting_a_large_object_deletes_its_old_segments(swift, swift_admin, container, tmp_path):
    """As the swift CLI does: the replaced version's segments go once the new version is in place."""
    storage = storage_as(swift, segment_size=1 * MiB)
    storage.upload(str(random_file(tmp_path / "first", 3 * MiB)), container, "big.bin")
    first_segments = swift_admin.list_keys(f"{container}_segments")
    assert len(first_segments) == 3
    second = random_file(tmp_path / "second", 2 * MiB + 1)
    storage.upload(str(second), container, "big.bin")
    segments = swift_admin.list_keys(f"{container}_segments")
    assert len(segments) == 3 and not set(segments) & set(first_segments)
    assert storage.download(container, "big.bin", str(tmp_path / "copy")).size == 2 * MiB + 1
    assert file_sha256(tmp_path / "copy") == file_sha256(second)
    (tmp_path / "small").write_bytes(b"small now")
    storage.upload(str(tmp_path / "small"), container, "big.bin")  # large -> small
    assert swift_admin.list_keys(f"{container}_segments") == []
    assert swift_admin.get_object(container, "big.bin") == b"small now"


def test_a_failed_overwrite_keeps_the_old_version_whole(swift, swift_admin, container, tmp_path):
    storage = storage_as(swift, segment_size=1 * MiB)
    first = random_file(tmp_path / "first", 3 * MiB)
    storage.upload(str(first), container, "big.bin")
    # The segments container's quota lets no new segment in: the second upload fails.
    swift_admin.connection().post_container(f"{container}_segments", {"X-Container-Meta-Quota-Bytes": str(3 * MiB)})
    with pytest.raises(StorageError):
        storage.upload(str(random_file(tmp_path / "second", 3 * MiB)), container, "big.bin")
    assert len(swift_admin.list_keys(f"{container}_segments")) == 3
    assert storage.download(container, "big.bin", str(tmp_path / "copy")).size == 3 * MiB
    assert file_sha256(tmp_path / "copy") == file_sha256(first)


def test_a_dynamic_large_object_is_replaced_with_its_segments(storage, swift_admin, container, tmp_path):
    """Objects written by older tools as DLOs (X-Object-Manifest): their segments go too, and only
    theirs."""
    conn, parts = swift_admin.connection(), f"{container}_parts"
    conn.put_container(parts)
    for index in range(2):
        conn.put_object(parts, f"old/{index}", b"x" * 10)
    conn.put_object(parts, "other/0", b"kept")
    conn.put_object(container, "dlo", b"", headers={"X-Object-Manifest": f"{parts}/old/"})
    assert swift_admin.get_object(container, "dlo") == b"x" * 20
    (tmp_path / "new").write_bytes(b"new")
    storage.upload(str(tmp_path / "new"), container, "dlo")
    assert swift_admin.list_keys(parts) == ["other/0"]
    assert swift_admin.get_object(container, "dlo") == b"new"


def test_segments_grow_to_stay_within_the_clusters_limit(swift, swift_admin, container, tmp_path):
    """The cluster allows 500 segments (/info); 20 MiB in 32 KiB segments would be 640."""
    storage = storage_as(swift, segment_size=32 * 1024)
    assert storage.max_segments() == 500
    source = random_file(tmp_path / "many", 20 * MiB)
    assert storage.upload(str(source), container, "many.bin").size == 20 * MiB
    assert len(swift_admin.list_keys(f"{container}_segments")) == 500
    assert storage.download(container, "many.bin", str(tmp_path / "copy")).size == 20 * MiB
    assert file_sha256(tmp_path / "copy") == file_sha256(source)

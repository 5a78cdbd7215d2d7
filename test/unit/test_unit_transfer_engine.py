"""transfer.engine: many objects in parallel, one result each, against a real moto S3 server."""

import hashlib
import os
import threading
import time

import pytest

from galaxy_cloud_storage.contracts import GetManifest, TransferRequest
from galaxy_cloud_storage.jobs import get_manifest
from galaxy_cloud_storage.providers.aws import AwsSettings
from galaxy_cloud_storage.providers.aws.storage import AwsCredentials, AwsStorage
from galaxy_cloud_storage.providers.integrity import Verified
from galaxy_cloud_storage.providers.storage import ObjectInfo, Transferred
from galaxy_cloud_storage.transfer.engine import (
    DEFAULT_WORKERS,
    get_objects,
    GetItem,
    send_files,
    SendItem,
    SMALL_OBJECT,
    SMALL_OBJECT_WORKERS,
)

BUCKET = "engine-bucket"
KEYS = ["one.txt", "dir/two.bin", "dir/sub dir/three ✓.dat", "four", "empty"]


def digest(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def test_send_then_get_several_objects_with_one_failing(moto_s3, tmp_path):
    moto_s3.admin().create_bucket(Bucket=BUCKET)
    storage = AwsStorage(AwsSettings(s3_endpoint_url=moto_s3.endpoint_url), AwsCredentials("k", "s"))
    outbox, inbox = tmp_path / "out", tmp_path / "in"
    outbox.mkdir()
    inbox.mkdir()
    sizes = {key: 0 if key == "empty" else 100_000 * (i + 1) for i, key in enumerate(KEYS)}
    sends = []
    for i, key in enumerate(KEYS):
        path = outbox / f"dataset_{i}.dat"
        path.write_bytes(os.urandom(sizes[key]))
        sends.append(SendItem(str(path), key))
    sends.insert(2, SendItem(str(outbox / "vanished.dat"), "vanished.txt"))  # its file is gone

    heard = []
    results = send_files(storage, BUCKET, sends, workers=3, on_result=heard.append)

    assert [r.key for r in results] == [item.key for item in sends]  # input order
    assert sorted(heard, key=lambda r: r.key) == sorted(results, key=lambda r: r.key)
    failed = results.pop(2)
    assert not failed.ok and failed.size == 0
    assert "vanished.txt" in failed.error and "vanished.dat" in failed.error
    assert [(r.key, r.ok, r.size, r.error, r.retries) for r in results] == [
        (key, True, sizes[key], None, 0) for key in KEYS
    ]
    for result, item in zip(results, [s for s in sends if s.key != "vanished.txt"], strict=True):
        assert result.verified.sha256 == digest(item.path) and result.seconds > 0
    assert storage.stat(BUCKET, "vanished.txt") is None
    for key in KEYS:
        assert storage.stat(BUCKET, key) == ObjectInfo(key, sizes[key])

    gets = [GetItem(key, str(inbox / f"dataset_{i}.dat")) for i, key in enumerate(KEYS)]
    gets.insert(1, GetItem("no/such key.txt", str(inbox / "missing.dat")))
    results = get_objects(storage, BUCKET, gets, workers=3)

    assert [r.key for r in results] == [item.key for item in gets]
    failed = results.pop(1)
    assert (failed.key, failed.ok, failed.size, failed.verified) == ("no/such key.txt", False, 0, None)
    assert "'no/such key.txt'" in failed.error and "does not exist" in failed.error
    assert not os.path.exists(inbox / "missing.dat")
    assert [(r.key, r.ok, r.size, r.error) for r in results] == [(key, True, sizes[key], None) for key in KEYS]
    for i in range(len(KEYS)):
        assert digest(inbox / f"dataset_{i}.dat") == digest(outbox / f"dataset_{i}.dat")


class SlowBackend:
    """Not a cloud: a backend that only measures how many transfers run at once (and says each
    object of ``retried`` was asked for again twice)."""

    def __init__(self):
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()
        self.hints = {}

    def download(self, bucket, key, path, size_hint=None):
        self.hints[key] = size_hint
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)
            if key == "bug":
                raise KeyError(key)  # not a StorageError: still only this item's failure
            return Transferred(len(key), Verified(hashlib.sha256(key.encode()).hexdigest()), 0)
        finally:
            with self.lock:
                self.running -= 1

    def upload(self, path, bucket, key, hashes=()):
        return self.download(bucket, key, path)

    def take_retries(self, key):
        return 2 if key == "bug" else 0

    def check_bucket(self, bucket):
        pass

    def stat(self, bucket, key):
        return None


def test_pool_is_bounded_and_parallel():
    backend = SlowBackend()
    items = [GetItem(f"key-{i}", f"/nonexistent/{i}") for i in range(12)] + [GetItem("bug", "/nonexistent/bug")]
    results = get_objects(backend, "b", items, workers=4)
    assert backend.most == 4
    assert [r.ok for r in results] == [True] * 12 + [False]
    assert results[-1].error == "Could not copy 'bug' from bucket 'b': KeyError: 'bug'"
    assert results[-1].retries == 2  # what its backend counted before it failed
    sent = send_files(backend, "b", [SendItem("/p", "k")], workers=8)
    assert [(r.key, r.ok, r.size, r.verified.sha256) for r in sent] == [
        ("k", True, 1, hashlib.sha256(b"k").hexdigest())
    ]
    assert backend.most == 4
    assert get_objects(backend, "b", []) == [] and send_files(backend, "b", []) == []


def test_small_objects_move_more_at_once_and_each_backend_hears_its_size():
    backend = SlowBackend()
    small = [GetItem(f"small-{i}", f"/nonexistent/{i}", size_hint=16 * 1024) for i in range(20)]
    assert all(r.ok for r in get_objects(backend, "b", small))
    assert backend.most == SMALL_OBJECT_WORKERS
    assert backend.hints == {f"small-{i}": 16 * 1024 for i in range(20)}


@pytest.mark.parametrize(
    "sizes",
    [[16 * 1024] * 19 + [SMALL_OBJECT], [16 * 1024] * 19 + [None]],
    ids=["one large object", "one size unknown (a job made before sizes were sent)"],
)
def test_a_large_or_unknown_object_keeps_the_default_pool(sizes):
    backend = SlowBackend()
    items = [GetItem(f"key-{i}", f"/nonexistent/{i}", size_hint=size) for i, size in enumerate(sizes)]
    assert all(r.ok for r in get_objects(backend, "b", items))
    assert backend.most == DEFAULT_WORKERS


def test_the_manifest_carries_the_sizes_of_the_request_and_none_for_older_jobs():
    request = TransferRequest(authz_id=1, bucket="b", keys=["a", "b"], sizes=[16, 2**40])
    manifest = GetManifest.model_validate_json(get_manifest(request.model_dump_json(), ["/d/0", "/d/1"], None))
    assert [(item.key, item.path, item.size_hint) for item in manifest.items] == [
        ("a", "/d/0", 16),
        ("b", "/d/1", 2**40),
    ]
    older = TransferRequest(authz_id=1, bucket="b", keys=["a"]).model_dump_json(exclude={"sizes"})
    manifest = GetManifest.model_validate_json(get_manifest(older, ["/d/0"], None))
    assert manifest.items[0].size_hint is None

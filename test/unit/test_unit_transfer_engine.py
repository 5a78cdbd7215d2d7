"""transfer.engine: many objects in parallel, one result each, against a real moto S3 server."""

import hashlib
import os
import threading
import time

from galaxy_cloud_storage.providers.aws import AwsSettings
from galaxy_cloud_storage.providers.aws.storage import AwsCredentials, AwsStorage
from galaxy_cloud_storage.providers.storage import ObjectInfo
from galaxy_cloud_storage.transfer.engine import get_objects, GetItem, ItemResult, send_files, SendItem

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
    assert results == [ItemResult(key, True, sizes[key], None) for key in KEYS]
    assert storage.stat(BUCKET, "vanished.txt") is None
    for key in KEYS:
        assert storage.stat(BUCKET, key) == ObjectInfo(key, sizes[key])

    gets = [GetItem(key, str(inbox / f"dataset_{i}.dat")) for i, key in enumerate(KEYS)]
    gets.insert(1, GetItem("no/such key.txt", str(inbox / "missing.dat")))
    results = get_objects(storage, BUCKET, gets, workers=3)

    assert [r.key for r in results] == [item.key for item in gets]
    failed = results.pop(1)
    assert failed == ItemResult("no/such key.txt", False, 0, failed.error)
    assert "'no/such key.txt'" in failed.error and "does not exist" in failed.error
    assert not os.path.exists(inbox / "missing.dat")
    assert results == [ItemResult(key, True, sizes[key], None) for key in KEYS]
    for i in range(len(KEYS)):
        assert digest(inbox / f"dataset_{i}.dat") == digest(outbox / f"dataset_{i}.dat")


class SlowBackend:
    """Not a cloud: a backend that only measures how many transfers run at once."""

    def __init__(self):
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def download(self, bucket, key, path):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)
            if key == "bug":
                raise KeyError(key)  # not a StorageError: still only this item's failure
            return len(key)
        finally:
            with self.lock:
                self.running -= 1

    def upload(self, path, bucket, key):
        return self.download(bucket, key, path)

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
    assert send_files(backend, "b", [SendItem("/p", "k")], workers=8) == [ItemResult("k", True, 1, None)]
    assert backend.most == 4
    assert get_objects(backend, "b", []) == [] and send_files(backend, "b", []) == []

"""The storage contract: what every cloud's backend does the same, each against its real local
server (backend_cases.py), and against a stand-in cloud that a test defines (standin_cloud.py).

What only one cloud has (multipart ETags, block lists, SAS scopes, resumable chunks, SLO segments,
the server's own identity in its SDK's favourite places) is in that cloud's own test file.
"""

import dataclasses
import json
import os
import typing
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from backend_cases import put_a_run_of_objects
from file_bytes import file_sha256, sha256, write

from galaxy_cloud_storage.providers import cloud, clouds
from galaxy_cloud_storage.providers import storage as base
from galaxy_cloud_storage.providers.storage import (
    AccessDenied,
    BucketNotFound,
    InvalidObjectName,
    MissingCredentials,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
)

pytest_plugins = ["azure_fixtures", "swift_fixtures", "backend_cases"]

MiB = 1024 * 1024
ODD_KEY = "dir/sub dir/ünïcødé ✓ file.txt"


# -- the registry ---------------------------------------------------------------------------------


def test_every_cloud_is_a_plugin_of_its_own(case):
    plugin = cloud(case.name)
    assert plugin.name == case.name and plugin.label
    assert isinstance(case.storage(), plugin.storage_type())
    assert case.storage().names.cloud == plugin.names.cloud
    assert plugin.credentials_type().__name__.endswith("Credentials")
    assert plugin.settings_model().enabled in (True, False)


def test_the_stand_in_is_found_only_while_its_test_runs(case):
    assert ("standin" in clouds()) == (case.name == "standin")


# -- buckets ---------------------------------------------------------------------------------------


def test_check_bucket_present_and_missing(case):
    storage = case.storage()
    storage.check_bucket(case.bucket)
    with pytest.raises(BucketNotFound, match=f"{case.noun.capitalize()} 'no-such-bucket' does not exist"):
        storage.check_bucket("no-such-bucket")


def test_unreachable_endpoint_is_named_and_shows_no_secret(case):
    with pytest.raises(StorageError, match="is unreachable") as e:
        case.unreachable().check_bucket("any-bucket")
    assert not isinstance(e.value, (BucketNotFound, AccessDenied))
    for secret in case.secrets:
        assert secret not in str(e.value)


# -- objects ---------------------------------------------------------------------------------------


def test_stat_present_and_missing(case):
    case.admin.put(case.bucket, ODD_KEY, b"12345")
    storage = case.storage()
    assert storage.stat(case.bucket, ODD_KEY) == ObjectInfo(key=ODD_KEY, size=5)
    assert storage.stat(case.bucket, "missing.txt") is None


@pytest.mark.parametrize("key,size", [("empty", 0), (ODD_KEY, 1000), ("big/12 MiB object.bin", 12 * MiB)])
def test_round_trip(case, tmp_path, key, size):
    """Up and down again, bytes identical under the exact key; the 12 MiB object in several parts
    each way (the case's small parts); no temporary file left beside the target."""
    storage = case.storage(**case.small_parts)
    data = os.urandom(size)
    source = write(tmp_path / "source", data)

    assert storage.upload(source, case.bucket, key).size == size
    # Read back by another client: the bytes are really there, under the exact key.
    assert sha256(case.admin.get(case.bucket, key)) == sha256(data)
    assert case.admin.keys(case.bucket) == [key]  # no part, block or segment shows in the listing
    assert storage.stat(case.bucket, key) == ObjectInfo(key=key, size=size)

    target = tmp_path / "target"
    assert storage.download(case.bucket, key, str(target)).size == size
    assert file_sha256(target) == sha256(data)
    assert sorted(os.listdir(tmp_path)) == ["source", "target"]


@pytest.mark.parametrize(
    "size,hint",
    [(1000, 1000), (3 * MiB, 16), (16, 3 * MiB), (0, 0)],
    ids=["hint right", "grew since listed", "shrank since listed", "empty"],
)
def test_download_with_a_size_hint_gets_the_object_as_it_is_now(case, tmp_path, size, hint):
    """A get passes the size its listing gave (engine.workers_for, the backends' one-GET path for
    small objects): a stale one changes how the bytes move, never which bytes arrive."""
    data = os.urandom(size)
    case.admin.put(case.bucket, ODD_KEY, data)
    target = tmp_path / "target"
    assert case.storage(**case.small_parts).download(case.bucket, ODD_KEY, str(target), size_hint=hint).size == size
    assert file_sha256(target) == sha256(data)
    assert os.listdir(tmp_path) == ["target"]


def test_download_with_a_size_hint_of_a_missing_object_leaves_no_file(case, tmp_path):
    target = tmp_path / "dataset.dat"
    target.write_bytes(b"")
    with pytest.raises(ObjectNotFound, match=f"Object 'nope.txt' does not exist in {case.noun} '{case.bucket}'"):
        case.storage().download(case.bucket, "nope.txt", str(target), size_hint=16)
    assert os.listdir(tmp_path) == []


def test_download_of_a_missing_object_leaves_no_file(case, tmp_path):
    target = tmp_path / "dataset.dat"
    target.write_bytes(b"")  # Galaxy creates its output files before the job runs
    with pytest.raises(ObjectNotFound, match=f"Object 'nope.txt' does not exist in {case.noun} '{case.bucket}'"):
        case.storage().download(case.bucket, "nope.txt", str(target))
    assert os.listdir(tmp_path) == []


def test_a_missing_bucket_is_no_place_to_upload_or_download(case, tmp_path):
    storage = case.storage()
    with pytest.raises(BucketNotFound, match=f"{case.noun.capitalize()} 'no-such-bucket' does not exist"):
        storage.upload(write(tmp_path / "source", b"data"), "no-such-bucket", "x")
    # (A download's 404 does not say which is missing on every cloud: the object, either way.)
    with pytest.raises((BucketNotFound, ObjectNotFound)):
        storage.download("no-such-bucket", "key", str(tmp_path / "target"))
    assert os.listdir(tmp_path) == ["source"]


def test_upload_of_a_missing_file(case, tmp_path):
    with pytest.raises(
        StorageError, match=f"Cannot read .*nothing-here.* to send it to 'x' in {case.noun} '{case.bucket}'"
    ):
        case.storage().upload(str(tmp_path / "nothing-here"), case.bucket, "x")
    assert case.admin.keys(case.bucket) == []


def test_stat_many_in_order(case):
    case.admin.put(case.bucket, "d/a", b"1")
    case.admin.put(case.bucket, "d/b", b"22")
    found = case.storage().stat_many(case.bucket, ["d/b", "d/missing", "d/a"])
    assert found == [ObjectInfo("d/b", 2), None, ObjectInfo("d/a", 1)]


def test_stat_many_answers_from_a_listing_or_key_by_key(case, monkeypatch):
    keys, expected = put_a_run_of_objects(lambda key, data: case.admin.put(case.bucket, key, data))
    assert case.storage().stat_many(case.bucket, keys) == expected
    monkeypatch.setattr(base, "LISTING_LIMIT", 10)  # a listing this long gives way to asking each key
    assert case.storage().stat_many(case.bucket, keys) == expected


# -- listing ---------------------------------------------------------------------------------------

#: keys a bucket may hold, which a listing returns as they are and which never change what it asks
ODD_KEYS = {
    "a//b": b"1",
    "/lead": b"22",
    "x/": b"",  # a "folder marker"
    "x/inside": b"333",
    "ünï/cødé ✓.txt": b"4444",
    "q&limit=1?marker=z#f": b"55555",
    "per%2Fcent": b"6",
    "plus+sign": b"77",
    "sp ace": b"888",
}


def put_all(case, objects: dict[str, bytes]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: case.admin.put(case.bucket, *item), objects.items()))


def walk(storage, bucket: str, prefix: str, delimiter, limit: int) -> list:
    """Every page of a listing, each asked for with the previous page's continuation."""
    pages, continuation = [], None
    while True:
        page = storage.list_page(bucket, prefix, delimiter, limit, continuation)
        pages.append(page)
        if page.continuation is None:
            return pages
        assert len(pages) < 200, "the listing never ends"
        continuation = page.continuation


def entries(pages: list) -> list[str]:
    """The pages' objects and folders, each page in name order."""
    return [name for page in pages for name in sorted([o.key for o in page.objects] + page.folders)]


def by_folder(keys: list[str], prefix: str) -> list[str]:
    """What a listing by "/" under ``prefix`` holds, from the sorted keys: keys, and folders in
    their first key's place."""
    listed = []
    for key in keys:
        if key.startswith(prefix):
            end = key.find("/", len(prefix))
            entry = key[: end + 1] if end >= 0 else key
            if not listed or listed[-1] != entry:
                listed.append(entry)
    return listed


def check_pages(pages: list, limit: int, delimiter) -> None:
    for page in pages:
        assert 1 <= len(page.objects) + len(page.folders) <= limit
        assert all(folder.endswith("/") for folder in page.folders)
        assert delimiter or not page.folders
    assert all(page.continuation for page in pages[:-1]) and pages[-1].continuation is None


def test_list_buckets_finds_the_case_bucket(case):
    buckets = {bucket.name: bucket for bucket in case.storage().list_buckets()}
    assert case.bucket in buckets
    created = buckets[case.bucket].created
    if case.name in ("aws", "gcp"):
        assert created.tzinfo is not None
        assert abs(created - datetime.now(timezone.utc)) < timedelta(minutes=10)
    else:  # Azure's and Swift's containers say when they last changed, not when they were made
        assert created is None


def test_list_buckets_where_they_may_not_be_listed_is_access_denied(case):
    with pytest.raises(AccessDenied, match=f"Access to the {case.noun}s of this account denied") as e:
        case.may_not_list().list_buckets()
    assert "None" not in str(e.value)


def test_list_page_of_a_missing_or_denied_bucket(case):
    with pytest.raises(BucketNotFound, match=f"{case.noun.capitalize()} 'no-such-bucket' does not exist"):
        case.storage().list_page("no-such-bucket", "", "/", 10)
    denied = case.denied()
    with pytest.raises(AccessDenied, match=f"Access to {case.noun} '{denied.bucket}' denied"):
        denied.backend.list_page(denied.bucket, "", None, 10)


def test_list_page_refuses_a_bad_limit_or_delimiter_before_any_call(case):
    storage = case.unreachable()
    for delimiter, limit in ((None, 0), ("/", -1), ("/", base.MAX_PAGE_SIZE + 1), ("", 10), ("|", 10)):
        with pytest.raises(ValueError):
            storage.list_page("good-bucket", "", delimiter, limit)
    with pytest.raises(InvalidObjectName):
        storage.list_page("..", "", None, 10)


#: 25 objects under run/ with folders among them: by folder, with limit 7, the first page ends on
#: one (run/k05x/, whose keys the next page must not repeat, nor skip run/k05x0 past them); the
#: last page is exactly full with limit 6 recursively (30 keys) and with limit 7 by folder (28 entries)
A_RUN = {f"run/k{i:02d}": os.urandom(i) for i in range(24)} | {
    "run/k05x0": b"0",
    "run/k05x/a": b"a",
    "run/k05x/b": b"bb",
    "run/sub-a/1": b"1",
    "run/sub-a/2": b"2",
    "run/sub-c/": b"",
}
FAKE_GCS_FOLDERS = (
    "fake-gcs-server counts only objects in maxResults and gives every prefix from the page's start to the "
    "listing's end, on each page (GCS counts both, and gives each prefix once)"
)


def fake_gcs_lists_folders_wrong(request, case) -> None:
    if case.name == "gcp":
        request.applymarker(pytest.mark.xfail(strict=True, reason=FAKE_GCS_FOLDERS))


@pytest.mark.parametrize("limit", [1, 6, 7])
def test_walking_the_pages_yields_every_key_once_in_the_clouds_order(case, limit):
    put_all(case, A_RUN | {"other/z": b"z"})
    storage, keys = case.storage(), case.admin.keys(case.bucket)
    before = datetime.now(timezone.utc) - timedelta(minutes=10)
    pages = walk(storage, case.bucket, "run/", None, limit)
    check_pages(pages, limit, None)
    assert entries(pages) == [key for key in keys if key.startswith("run/")]
    for listed in (item for page in pages for item in page.objects):
        assert listed.size == len(A_RUN[listed.key])
        assert before < listed.last_modified < datetime.now(timezone.utc) + timedelta(minutes=10)


@pytest.mark.parametrize("limit", [1, 6, 7])
def test_walking_the_pages_by_folder_yields_every_entry_once(request, case, limit):
    fake_gcs_lists_folders_wrong(request, case)
    put_all(case, A_RUN | {"other/z": b"z"})
    storage, keys = case.storage(), case.admin.keys(case.bucket)
    pages = walk(storage, case.bucket, "run/", "/", limit)
    check_pages(pages, limit, "/")
    assert entries(pages) == by_folder(keys, "run/")
    if limit == 7:
        assert pages[0].folders == ["run/k05x/"] and pages[1].objects[0].key == "run/k05x0"
    assert entries(walk(storage, case.bucket, "run/sub-c/", "/", limit)) == ["run/sub-c/"]


def test_a_full_listing_in_one_page_says_it_is_the_last(case):
    put_all(case, {f"k{i}": b"x" for i in range(5)})
    assert walk(case.storage(), case.bucket, "", None, 5)[0].continuation is None


def test_odd_keys_are_listed_as_they_are(case):
    put_all(case, ODD_KEYS)
    keys = case.admin.keys(case.bucket)
    assert sorted(keys) == sorted(ODD_KEYS)
    pages = walk(case.storage(), case.bucket, "", None, 1)
    assert entries(pages) == keys
    assert {o.key: o.size for page in pages for o in page.objects} == {k: len(v) for k, v in ODD_KEYS.items()}


def test_odd_keys_are_listed_as_they_are_by_folder(request, case):
    fake_gcs_lists_folders_wrong(request, case)
    put_all(case, ODD_KEYS)
    storage, keys = case.storage(), case.admin.keys(case.bucket)
    for prefix in ("", "/", "a/", "a//", "x/", "ünï/", "q&"):
        pages = walk(storage, case.bucket, prefix, "/", 2)
        check_pages(pages, 2, "/")
        assert entries(pages) == by_folder(keys, prefix), prefix


@pytest.mark.parametrize("delimiter", [None, "/"])
def test_one_page_is_one_request_wherever_it_is(case, delimiter):
    put_all(case, {f"d{i // 10}/k{i:02d}": b"x" for i in range(40)} | {f"k{i:02d}": b"y" for i in range(30)})
    storage = case.storage()
    fifth = walk(storage, case.bucket, "", delimiter, 5)[3].continuation
    for continuation in (None, fifth):
        with case.requests_sent(storage) as sent:
            page = storage.list_page(case.bucket, "", delimiter, 5, continuation)
        assert len(sent) == 1, sent
        assert page.continuation is not None


# -- names (invariant 10) --------------------------------------------------------------------------


def test_names_the_cloud_cannot_hold_are_refused_before_any_call(case, tmp_path):
    """The unreachable backend shows it: a call would fail with "unreachable"."""
    storage = case.unreachable()
    source = write(tmp_path / "source", b"x")
    calls = [
        lambda bucket, key: storage.check_bucket(bucket),
        lambda bucket, key: storage.stat(bucket, key),
        lambda bucket, key: storage.stat_many(bucket, [key]),
        lambda bucket, key: storage.download(bucket, key, str(tmp_path / "target")),
        lambda bucket, key: storage.upload(source, bucket, key),
    ]
    for bucket, key in ((".", "key"), ("..", "key"), ("good-bucket", "nul\x00key"), ("good-bucket", "")):
        for call in calls:
            if key == "key" or call is not calls[0]:
                with pytest.raises(InvalidObjectName, match="is not a valid"):
                    call(bucket, key)
    assert os.listdir(tmp_path) == ["source"]


# -- denied, never "missing" ----------------------------------------------------------------------


def test_denied_is_access_denied_on_every_operation(case, tmp_path):
    denied = case.denied()
    storage, bucket = denied.backend, denied.bucket
    before = case_keys(case, denied)
    with pytest.raises(AccessDenied, match=f"Access to {case.noun} '{bucket}'"):
        storage.check_bucket(bucket)
    with pytest.raises(AccessDenied, match=f"object '{denied.key}'"):
        storage.stat(bucket, denied.key)
    with pytest.raises(AccessDenied):
        storage.stat_many(bucket, [denied.key, "absent"])
    target = tmp_path / "dataset.dat"
    with pytest.raises(AccessDenied, match=f"object '{denied.key}'"):
        storage.download(bucket, denied.key, str(target))
    assert not target.exists()
    with pytest.raises(AccessDenied, match="object 'new.txt'") as upload_error:
        storage.upload(write(tmp_path / "source", b"data"), bucket, "new.txt")
    for secret in case.secrets:
        assert secret not in str(upload_error.value)
    assert case_keys(case, denied) == before


def case_keys(case, denied) -> list[str]:
    """The denied bucket's keys, where the case's own access can list them (AWS's and GCS's denied
    buckets are on another server of the case)."""
    try:
        return case.admin.keys(denied.bucket)
    except Exception:
        return []


# -- credentials ---------------------------------------------------------------------------------


def test_missing_credentials_are_refused_before_any_request(case):
    for credentials in case.missing_credentials:
        with pytest.raises(MissingCredentials):
            case.build(credentials)


def test_credentials_repr_hides_secrets_and_json_keeps_them(case):
    kind = cloud(case.name).credentials_type()
    hints = typing.get_type_hints(kind)
    example = kind(**{name: None if datetime in typing.get_args(hints[name]) else f"value-of-{name}" for name in hints})
    hidden = [spec.name for spec in dataclasses.fields(kind) if not spec.repr]
    assert hidden, f"{kind.__name__} shows every field"
    shown = repr(example) + str(example)
    for name in hidden:
        assert f"value-of-{name}" not in shown
    assert kind.from_json(json.loads(json.dumps(example.to_json()))) == example


# -- a job told to stop ------------------------------------------------------------------------------


class StoppedAfter:
    """``storage.STOPPED`` as the job's SIGTERM handler leaves it, after ``reads``
    checks: the upload is stopped partway, after its first bytes went."""

    def __init__(self, reads: int):
        self.reads = reads

    def is_set(self) -> bool:
        self.reads -= 1
        return self.reads < 0


@pytest.mark.parametrize("reads", [0, 1])
def test_a_stopped_job_stops_its_upload_and_leaves_no_object(case, tmp_path, monkeypatch, reads):
    storage = case.storage(**case.small_parts)
    source = write(tmp_path / "source", os.urandom(12 * MiB))
    monkeypatch.setattr(base, "STOPPED", StoppedAfter(reads))

    with pytest.raises(base.TransferStopped, match="stopped"):
        storage.upload(source, case.bucket, "stopped.bin")

    monkeypatch.undo()
    assert "stopped.bin" not in case.admin.keys(case.bucket)
    assert storage.stat(case.bucket, "stopped.bin") is None


def test_a_stopped_job_keeps_nothing_of_a_download(case, tmp_path, monkeypatch):
    """Where the SDK moves the bytes by itself (Azure's, GCS's downloaders), it may finish after the
    job was stopped: its output still never becomes the dataset's file."""
    storage = case.storage(**case.small_parts)
    case.admin.put(case.bucket, "to-stop.bin", os.urandom(6 * MiB))
    target = tmp_path / "dataset.dat"
    target.write_bytes(b"")  # Galaxy creates its output files before the job runs
    monkeypatch.setattr(base, "STOPPED", StoppedAfter(0))

    with pytest.raises(base.TransferStopped):
        storage.download(case.bucket, "to-stop.bin", str(target))

    assert os.listdir(tmp_path) == []

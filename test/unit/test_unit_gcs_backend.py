"""providers.gcp.storage.GcsStorage against a real fake-gcs-server on 127.0.0.1 (gcp_servers.py):
what only Cloud Storage has. What every backend does is in test_unit_storage_contract.py.

fake-gcs-server checks no credentials: 401/403 answers are not shown here (see the known gaps in
the GCP notes); everything else is the real server's behaviour.
"""

import os
import threading

import pytest
from backend_cases import put_a_run_of_objects
from file_bytes import file_sha256, sha256
from gcp_servers import dead_endpoint, fake_gcs_server

from galaxy_cloud_storage.providers import storage as base
from galaxy_cloud_storage.providers.gcp import GcpSettings
from galaxy_cloud_storage.providers.gcp.storage import GcpCredentials, GcsStorage
from galaxy_cloud_storage.providers.settings import MiB
from galaxy_cloud_storage.providers.storage import BucketNotFound, ObjectInfo, StorageError

BUCKET = "test-bucket"
TOKEN = "user-test-access-token"
USER_TOKEN = GcpCredentials(TOKEN)
ODD_KEY = "dir/sub dir/ünïcødé ✓ file.txt"
CONFIG = {"project": "user-project"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with fake_gcs_server(str(tmp_path_factory.mktemp("fake-gcs") / "fake-gcs.log")) as (admin, _process):
        yield admin


@pytest.fixture
def admin(server):
    client = server.client()
    for bucket in client.list_buckets():
        server.delete_bucket(bucket.name)
    server.create_bucket(BUCKET)
    return server


def storage_for(server, credentials=USER_TOKEN, **settings) -> GcsStorage:
    return GcsStorage(GcpSettings(storage_endpoint=server.endpoint_url, **settings), credentials, CONFIG)


@pytest.fixture
def gcs(admin):
    return storage_for(admin)


def bearer_tokens(storage: GcsStorage) -> list:
    """Record the Authorization header of every request the backend sends (a requests hook)."""
    seen = []
    storage.session.hooks["response"].append(
        lambda response, **kw: seen.append(response.request.headers.get("Authorization"))
    )
    return seen


# --- buckets and objects -------------------------------------------------------------------------


def test_requests_carry_the_users_token_to_the_admins_endpoint(gcs):
    seen = bearer_tokens(gcs)
    urls = []
    gcs.session.hooks["response"].append(lambda response, **kw: urls.append(response.request.url))
    gcs.check_bucket(BUCKET)
    assert seen == [f"Bearer {TOKEN}"], urls
    assert urls[0].startswith(gcs.endpoint_url + "/storage/v1/b/test-bucket/o")


def test_a_large_object_moves_in_resumable_chunks_and_ranges(admin, tmp_path):
    """40 MiB: a resumable upload in 10 chunks, 10 ranged GETs (the contract suite's round trips
    are smaller)."""
    key, size = "big/40 MiB object.bin", 40 * MiB
    gcs = storage_for(admin, chunk_size=4 * MiB)
    data = os.urandom(size)
    source = tmp_path / "source"
    source.write_bytes(data)
    requests_sent = []
    lock = threading.Lock()

    def record(response, **kwargs):
        with lock:
            requests_sent.append((response.request.method, response.request.url, response.status_code))

    gcs.session.hooks["response"].append(record)

    assert gcs.upload(str(source), BUCKET, key).size == size
    # Read back by another client: the bytes are really there, under the exact key.
    assert sha256(admin.get_object(BUCKET, key)) == sha256(data)
    assert gcs.stat(BUCKET, key) == ObjectInfo(key=key, size=size)
    chunks = [r for r in requests_sent if r[0] == "PUT" and "uploadType=resumable" in r[1]]
    assert len(chunks) == 10 and [r[2] for r in chunks[:-1]] == [308] * 9  # "resume incomplete"
    requests_sent.clear()

    target = tmp_path / "target"
    assert gcs.download(BUCKET, key, str(target)).size == size
    assert file_sha256(target) == sha256(data)
    assert sorted(os.listdir(tmp_path)) == ["source", "target"]  # no temporary files left
    assert len([r for r in requests_sent if r[0] == "GET" and "alt=media" in r[1]]) == 10


def test_download_from_a_missing_bucket_says_which_is_missing(gcs, tmp_path):
    """GCS's 404 body does not tell a missing bucket from a missing object: the backend asks."""
    target = tmp_path / "dataset.dat"
    target.write_bytes(b"")  # Galaxy creates its output files before the job runs
    with pytest.raises(BucketNotFound, match="Bucket 'no-such-bucket' does not exist"):
        gcs.download("no-such-bucket", "nope.txt", str(target))
    assert os.listdir(tmp_path) == []


def test_download_of_an_object_replaced_midway_fails_and_leaves_no_file(admin, tmp_path):
    admin.put_object(BUCKET, "going.bin", os.urandom(4 * MiB))
    gcs = storage_for(admin, chunk_size=MiB // 2)  # 8 ranged GETs, 4 at a time: some start after the change
    replaced = threading.Event()

    def replace_after_first_range(response, **kwargs):
        if "alt=media" in response.request.url and not replaced.is_set():
            replaced.set()  # someone overwrites the object while it is being copied
            admin.put_object(BUCKET, "going.bin", b"new version")

    gcs.session.hooks["response"].append(replace_after_first_range)
    target = tmp_path / "dataset.dat"
    with pytest.raises(StorageError, match="'going.bin' in bucket 'test-bucket': it was replaced while being copied"):
        gcs.download(BUCKET, "going.bin", str(target))
    assert replaced.is_set()
    assert os.listdir(tmp_path) == []


def test_upload_to_missing_bucket(gcs, tmp_path):
    for size in (4, 9 * MiB):  # multipart and resumable
        source = tmp_path / "source"
        source.write_bytes(os.urandom(size))
        with pytest.raises(BucketNotFound, match="Bucket 'no-such-bucket' does not exist"):
            gcs.upload(str(source), "no-such-bucket", "x")


def test_failed_resumable_upload_leaves_no_object(admin, tmp_path):
    """The file shrinks under the upload after its first chunk (a dataset purged meanwhile): the
    upload fails and the server has no object, not even a partial one."""
    source = tmp_path / "source"
    source.write_bytes(os.urandom(12 * MiB))
    gcs = storage_for(admin, chunk_size=4 * MiB)
    statuses = []

    def truncate_after_first_chunk(response, **kwargs):
        if response.request.method == "PUT":
            statuses.append(response.status_code)
            if len(statuses) == 1:
                os.truncate(source, 5 * MiB)

    gcs.session.hooks["response"].append(truncate_after_first_chunk)
    with pytest.raises(StorageError, match="Could not upload object 'part.bin' in bucket 'test-bucket'"):
        gcs.upload(str(source), BUCKET, "part.bin")
    assert statuses[0] == 308  # the first chunk was accepted
    assert admin.list_keys(BUCKET) == []
    assert gcs.stat(BUCKET, "part.bin") is None


def test_upload_to_a_server_that_dies_midway_leaves_no_object(tmp_path):
    """fake-gcs-server killed after the first chunk, then started again on the same port: the
    retries run out with a message naming the endpoint, and no object appeared."""
    with fake_gcs_server(str(tmp_path / "dying.log")) as (admin, process):
        admin.create_bucket(BUCKET)
        source = tmp_path / "source"
        source.write_bytes(os.urandom(12 * MiB))
        gcs = storage_for(admin, chunk_size=4 * MiB, retry_timeout=2)

        def kill_after_first_chunk(response, **kwargs):
            if response.request.method == "PUT":
                process.kill()
                process.wait()

        gcs.session.hooks["response"].append(kill_after_first_chunk)
        with pytest.raises(
            StorageError, match=f"the Google Cloud Storage endpoint {admin.endpoint_url} is unreachable"
        ):
            gcs.upload(str(source), BUCKET, "part.bin")


# --- credentials, endpoints ----------------------------------------------------------------------


def test_endpoint_and_verify_come_from_settings(tmp_path):
    gcs = GcsStorage(GcpSettings(), USER_TOKEN, CONFIG)
    assert gcs.client._connection.API_BASE_URL == "https://storage.googleapis.com"
    assert gcs.session.verify is True
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    gcs = GcsStorage(
        GcpSettings(storage_endpoint="https://gcs.example.org/", ca_bundle=str(bundle)), USER_TOKEN, CONFIG
    )
    assert gcs.client._connection.API_BASE_URL == "https://gcs.example.org"
    assert gcs.session.verify == str(bundle)
    assert gcs.client.project == "user-project"


def test_server_identity_and_environment_are_never_used(admin, monkeypatch, tmp_path):
    """Invariants 3 and 4: the server's own Google identity, project and endpoints in every place
    google-auth and google-cloud-storage look are ignored."""
    bogus_key = tmp_path / "server-key.json"
    bogus_key.write_text('{"type": "service_account", "client_email": "server@x.iam.gserviceaccount.com"}')
    for name, value in {
        "GOOGLE_APPLICATION_CREDENTIALS": str(bogus_key),
        "GOOGLE_CLOUD_PROJECT": "server-project",
        "GCLOUD_PROJECT": "server-project",
        "GCE_METADATA_HOST": dead_endpoint()[len("http://") :],
        "GCE_METADATA_IP": dead_endpoint()[len("http://") :],
        "STORAGE_EMULATOR_HOST": dead_endpoint(),
        "API_ENDPOINT_OVERRIDE": dead_endpoint(),
        "CLOUDSDK_CONFIG": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    import google.auth

    with pytest.raises(google.auth.exceptions.DefaultCredentialsError):
        google.auth.default()  # the environment is poisoned indeed

    gcs = storage_for(admin)
    seen = bearer_tokens(gcs)
    assert gcs.client.project == "user-project"
    admin.put_object(BUCKET, "present.txt", b"abc")
    gcs.check_bucket(BUCKET)
    assert gcs.stat(BUCKET, "present.txt") == ObjectInfo("present.txt", 3)
    assert set(seen) == {f"Bearer {TOKEN}"}

    # A record without a project: no project at all, not the environment's.
    assert GcsStorage(GcpSettings(storage_endpoint=admin.endpoint_url), USER_TOKEN, {}).client.project is None


def test_stat_many_answers_from_one_listing(admin, monkeypatch):
    keys, expected = put_a_run_of_objects(lambda key, data: admin.put_object(BUCKET, key, data))
    gcs = storage_for(admin)
    calls = []
    gcs.session.hooks["response"].append(lambda response, **kw: calls.append(response.request.url))

    assert gcs.stat_many(BUCKET, keys) == expected
    assert len(calls) == 2  # one listing (one page) answers all; one object GET proves read access
    assert "/o?" in calls[0] and "/o/run%2F03.txt" in calls[1]

    calls.clear()
    monkeypatch.setattr(base, "LISTING_LIMIT", 10)
    assert gcs.stat_many(BUCKET, keys) == expected
    assert len(calls) >= 3  # a long listing gives way to reading the keys

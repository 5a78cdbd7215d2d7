"""providers.aws.storage.AwsStorage against a real moto S3 server on 127.0.0.1 (see conftest.py):
what only S3 has. What every backend does is in test_unit_storage_contract.py."""

import os
import threading

import pytest
from backend_cases import put_a_run_of_objects
from file_bytes import file_sha256, sha256

from galaxy_cloud_storage.providers import cloud
from galaxy_cloud_storage.providers import storage as base
from galaxy_cloud_storage.providers.aws import AwsAuthzConfig, AwsSettings
from galaxy_cloud_storage.providers.aws.storage import AwsCredentials, AwsStorage
from galaxy_cloud_storage.providers.cloud import RecordNotAllowed
from galaxy_cloud_storage.providers.settings import MiB
from galaxy_cloud_storage.providers.storage import (
    AccessDenied,
    MissingCredentials,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
)

BUCKET = "test-bucket"
USER_KEYS = AwsCredentials("user-test-key", "user-test-secret", "user-test-token")
ROLE_ARN = "arn:aws:iam::123456789012:role/galaxy"
ODD_KEY = "dir/sub dir/ünïcødé ✓ file.txt"


def storage_for(server, credentials=USER_KEYS, **settings) -> AwsStorage:
    return AwsStorage(AwsSettings(s3_endpoint_url=server.endpoint_url, **settings), credentials)


@pytest.fixture
def admin(moto_s3):
    client = moto_s3.admin()
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def storage(moto_s3, admin):
    return storage_for(moto_s3)


def dead_endpoint() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens there


# --- multipart -----------------------------------------------------------------------------------


def test_a_large_object_moves_in_parts(storage, admin, tmp_path):
    """Above the 16 MiB part size: multipart both ways (the contract suite's round trips are smaller)."""
    key, size = "big/40 MiB object.bin", 40 * MiB
    data = os.urandom(size)
    source = tmp_path / "source"
    source.write_bytes(data)

    assert storage.upload(str(source), BUCKET, key).size == size
    # Read back by another client: the bytes are really there, under the exact key.
    assert sha256(admin.get_object(Bucket=BUCKET, Key=key)["Body"].read()) == sha256(data)
    assert storage.stat(BUCKET, key) == ObjectInfo(key=key, size=size)
    assert admin.head_object(Bucket=BUCKET, Key=key)["ETag"].endswith('-3"')  # 3 parts

    target = tmp_path / "target"
    assert storage.download(BUCKET, key, str(target)).size == size
    assert file_sha256(target) == sha256(data)
    assert sorted(os.listdir(tmp_path)) == ["source", "target"]  # no temporary files left


def test_download_failing_midway_leaves_no_file(moto_s3, admin, tmp_path):
    data = os.urandom(12 * MiB)
    admin.put_object(Bucket=BUCKET, Key="going.bin", Body=data)
    storage = storage_for(moto_s3, part_size=5 * MiB)  # 3 ranged GETs
    gets = []
    lock = threading.Lock()

    def delete_after_first_part(params, **kwargs):
        with lock:
            gets.append(params["headers"].get("Range"))  # the request about to be sent
            if len(gets) == 2:  # someone deletes the object while it is being copied
                admin.delete_object(Bucket=BUCKET, Key="going.bin")

    storage.client.meta.events.register("before-call.s3.GetObject", delete_after_first_part)
    target = tmp_path / "dataset.dat"
    with pytest.raises(ObjectNotFound, match="going.bin"):
        storage.download(BUCKET, "going.bin", str(target))
    assert len(gets) >= 2 and all(gets)
    assert os.listdir(tmp_path) == []  # neither the target nor s3transfer's temporary file


def test_failed_multipart_upload_is_aborted(moto_s3, admin, tmp_path):
    source = tmp_path / "source"
    source.write_bytes(os.urandom(12 * MiB))
    storage = storage_for(moto_s3, part_size=5 * MiB)  # 3 parts
    calls = []
    lock = threading.Lock()

    def fail_after_first_part(**kwargs):
        with lock:
            calls.append(kwargs["event_name"])
            if kwargs["event_name"].endswith("UploadPart") and calls.count(kwargs["event_name"]) >= 2:
                # the file cannot be read any further
                raise OSError(5, "Input/output error")

    events = storage.client.meta.events
    for operation in ("CreateMultipartUpload", "UploadPart", "AbortMultipartUpload", "CompleteMultipartUpload"):
        events.register(f"before-call.s3.{operation}", fail_after_first_part)

    with pytest.raises(
        StorageError, match="Could not upload object 'part.bin' in bucket 'test-bucket': Input/output error"
    ):
        storage.upload(str(source), BUCKET, "part.bin")
    assert "before-call.s3.CreateMultipartUpload" in calls
    assert "before-call.s3.AbortMultipartUpload" in calls
    assert "before-call.s3.CompleteMultipartUpload" not in calls
    # Checked on the server: no upload in progress (its parts would be stored and billed, unseen).
    assert admin.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert admin.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


# --- credentials, endpoints, regions -------------------------------------------------------------


def test_endpoint_and_region_come_from_settings_and_record():
    aws = AwsStorage(AwsSettings(), USER_KEYS)
    assert aws.endpoint_url is None
    assert aws.region == "us-east-1"
    assert aws.client.meta.endpoint_url == "https://s3.amazonaws.com"

    settings = AwsSettings(s3_endpoint_url="http://127.0.0.1:9000/", s3_region="eu-west-3")
    assert AwsStorage(settings, USER_KEYS).region == "eu-west-3"
    custom = AwsStorage(settings, USER_KEYS, {"region": "ca-central-1"})
    assert custom.region == custom.client.meta.region_name == "ca-central-1"
    assert custom.client.meta.endpoint_url == "http://127.0.0.1:9000"


def test_a_records_region_stays_in_the_admins_partition():
    """Invariant 4 (issue 8, defect 2): with no endpoint of the admin's, a record's region picks S3's
    host, so only a region of the admin's own AWS partition may be named."""
    aws = cloud("aws")
    for settings, same_partition, others in (
        (AwsSettings(), "eu-west-3", ["cn-north-1", "us-gov-west-1", "us-east-99", "eu-west-1.evil"]),
        (AwsSettings(s3_region="us-gov-west-1"), "us-gov-east-1", ["us-east-1", "cn-north-1"]),
    ):
        aws.check_record(settings, AwsAuthzConfig(role_arn=ROLE_ARN, region=same_partition))
        assert AwsStorage(settings, USER_KEYS, {"region": same_partition}).region == same_partition
        for region in others:
            with pytest.raises(RecordNotAllowed, match="not a region of this Galaxy's AWS partition"):
                aws.check_record(settings, AwsAuthzConfig.model_construct(role_arn=ROLE_ARN, region=region))
            with pytest.raises(AccessDenied, match="not a region of this Galaxy's AWS partition"):
                AwsStorage(settings, USER_KEYS, {"region": region})


def test_an_arn_that_got_past_the_names_picks_no_region():
    """Invariant 4 (issue 8, defect 2), the SDK's half: S3NameRules refuses ARNs before any call;
    should one reach botocore, an access point of another region or a Multi-Region Access Point is
    refused before anything is sent (by default botocore sends to the ARN's region)."""
    storage = AwsStorage(AwsSettings(), USER_KEYS)
    sent = []

    def record(request, **kwargs):
        sent.append(request.url)
        raise ConnectionAbortedError("not sending")

    storage.client.meta.events.register("before-send.s3.*", record)
    for arn, reason in (
        ("arn:aws:s3:us-west-2:123456789012:accesspoint/reports", "does not match client region"),
        ("arn:aws:s3::123456789012:accesspoint/mrap.mrap", "Multi-Region Access Point ARNs are disabled"),
    ):
        with pytest.raises(Exception, match=reason):
            storage.client.head_object(Bucket=arn, Key="x")
    assert sent == []


def test_server_identity_is_never_used(moto_strict, monkeypatch, tmp_path):
    """Invariant 3: good credentials in every place boto3 would look are ignored."""
    good_key, good_secret = moto_strict.access_key_id, moto_strict.secret_access_key
    credentials_file = tmp_path / "credentials"
    credentials_file.write_text(
        f"[default]\naws_access_key_id = {good_key}\naws_secret_access_key = {good_secret}\n"
        f"[server]\naws_access_key_id = {good_key}\naws_secret_access_key = {good_secret}\n"
    )
    config_file = tmp_path / "config"
    # An endpoint that is nothing: if it were read, even good requests would fail.
    config_file.write_text(
        f"[default]\nendpoint_url = {dead_endpoint()}\n[profile server]\nendpoint_url = {dead_endpoint()}\n"
    )
    for name, value in {
        "AWS_ACCESS_KEY_ID": good_key,
        "AWS_SECRET_ACCESS_KEY": good_secret,
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials_file),
        "AWS_CONFIG_FILE": str(config_file),
        "AWS_PROFILE": "server",
        "AWS_ENDPOINT_URL": dead_endpoint(),
        "AWS_ENDPOINT_URL_S3": dead_endpoint(),
    }.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(MissingCredentials):
        AwsStorage(AwsSettings(s3_endpoint_url=moto_strict.endpoint_url), AwsCredentials("", ""))

    # Someone else's keys: refused by the server, although the environment holds good ones.
    wrong = storage_for(moto_strict, AwsCredentials("AKIAWRONGWRONGWRONG1", "wrong-secret"))
    assert wrong.session.get_credentials().method == "explicit"
    with pytest.raises(AccessDenied):
        wrong.check_bucket(moto_strict.bucket)

    # The user's own keys: work, at the admin's endpoint, with no stray session token.
    right = storage_for(moto_strict, AwsCredentials(good_key, good_secret))
    assert right.session.get_credentials().token is None
    assert right.client.meta.endpoint_url == moto_strict.endpoint_url
    right.check_bucket(moto_strict.bucket)
    assert right.stat(moto_strict.bucket, moto_strict.key) == ObjectInfo(moto_strict.key, 6)

    # A profile that does not exist would make a default boto3 session fail; ours never reads it.
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    storage_for(moto_strict, AwsCredentials(good_key, good_secret)).check_bucket(moto_strict.bucket)


def test_stat_many_answers_from_one_listing_and_falls_back_to_heads(moto_s3, monkeypatch):
    admin = moto_s3.admin()
    admin.create_bucket(Bucket="many")
    keys, expected = put_a_run_of_objects(lambda key, data: admin.put_object(Bucket="many", Key=key, Body=data))
    storage = AwsStorage(AwsSettings(s3_endpoint_url=moto_s3.endpoint_url), AwsCredentials("k", "s"))
    calls = []
    storage.client.meta.events.register("before-call.s3.*", lambda model, **kw: calls.append(model.name))

    assert storage.stat_many("many", keys) == expected
    assert calls == ["ListObjectsV2", "HeadObject"]  # one short listing answers all; one HEAD proves read access

    calls.clear()
    monkeypatch.setattr(base, "LISTING_LIMIT", 10)
    assert storage.stat_many("many", keys) == expected
    assert calls.count("HeadObject") >= 2  # a long listing gives way to HEADs for the rest


# --- what is verified ----------------------------------------------------------------------------


def test_a_multipart_object_without_full_object_checksums_is_said_unverified(moto_s3, storage, admin, tmp_path):
    """Sent in parts by another tool, with composite checksums of its parts (boto3's default) and a
    multipart ETag: S3 keeps no whole-object checksum of it. The get says so, keeps the SHA-256, and
    does not fail; an object the plugin sent in parts is verified (its full-object CRC32)."""
    from boto3.s3.transfer import TransferConfig

    source = tmp_path / "source"
    source.write_bytes(os.urandom(12 * MiB))
    parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    admin.upload_file(str(source), BUCKET, "theirs.bin", Config=parts)
    assert admin.head_object(Bucket=BUCKET, Key="theirs.bin")["ETag"].endswith('-3"')

    got = storage.download(BUCKET, "theirs.bin", str(tmp_path / "theirs"))
    assert got.verified.sha256 == file_sha256(source) and got.verified.matched == ()
    assert got.verified.describe() == (
        "not verified: S3 keeps no whole-object checksum of it (a multipart upload without full-object checksums)"
    )

    storage_for(moto_s3, part_size=5 * MiB).upload(str(source), BUCKET, "ours.bin")
    ours = storage.download(BUCKET, "ours.bin", str(tmp_path / "ours"))
    assert ours.verified.matched == ("SHA-256 (sha256 metadata, x-amz-meta-sha256)", "CRC32 (S3 ChecksumCRC32)")

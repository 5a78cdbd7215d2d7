"""Faults on the wire, between each cloud's backend and its real local server: a relay
(galaxy_cloud_storage_testing.fault_proxy) stands in front of the server and answers 503s, breaks
bodies mid-way, stalls past the read timeout, flips a byte, or is gone for good.

Transient faults are ridden out by each SDK's own retries (and a broken body asked again from the
byte reached): the bytes are the same and verified, and the retries are counted. A permanent error
is never retried. Bytes that differ from the cloud's checksum, or a server gone for good, fail the
object within a bounded time, naming it and the cause, and leave no file and no object.
"""

import os
import threading
import time

import pytest
from file_bytes import file_sha256, sha256, write

from galaxy_cloud_storage.providers import storage as base
from galaxy_cloud_storage.providers.storage import AccessDenied, IntegrityError, StorageError
from galaxy_cloud_storage_testing.fault_proxy import (
    Callback,
    Corrupt,
    FaultProxy,
    ResetMidBody,
    s3_error,
    Stall,
    Status,
)

pytest_plugins = ["azure_fixtures", "swift_fixtures", "backend_cases"]

MiB = 1024 * 1024
# In 1 MiB ranges: several requests for a download. In 1 MiB blocks and segments, 4 MiB chunks and
# 5 MiB parts: several for an upload (GCS's uploads are one request up to 8 MiB).
DOWN_SIZE = 4 * MiB
UP_SIZE = 10 * MiB
#: Which GETs carry an object's bytes (GCS reads an object's metadata with a GET too).
MEDIA = {"aws": r"\.bin$", "azure": r"\.bin", "gcp": r"alt=media", "openstack": r"\.bin$"}
#: The most a failure may take here: the SDKs' retries, bounded, with the admin's settings but
#: shorter retries where a setting says how long (QUICK_FAILURE; the bound scales with them).
QUICK_FAILURE = {"gcp": {"retry_timeout": 5}, "azure": {"retries": 2}}
FAILURE_BOUND = 40
#: The module constant that holds each cloud's read timeout, and how to make it short.
READ_TIMEOUTS = {
    "aws": ("galaxy_cloud_storage.providers.aws.storage", "READ_TIMEOUT", 2),
    "azure": ("galaxy_cloud_storage.providers.azure.storage", "READ_TIMEOUT", 2),
    "gcp": ("galaxy_cloud_storage.providers.gcp.storage", "REQUEST_TIMEOUT", (10, 2)),
    "openstack": ("galaxy_cloud_storage.providers.openstack.storage", "TIMEOUT", 2),
}


@pytest.fixture
def proxy(served_case):
    with FaultProxy(served_case.server_port) as relay:
        yield relay


def through(case, proxy, **settings):
    """The case's backend, reaching its server through the relay, moving 1 MiB pieces."""
    storage = case.via(proxy.url, **{**case.small_parts, **settings})
    storage.range_size = MiB
    return storage


def unavailable(case) -> Status:
    """A 503 to every third request, three times at most (so that no request, even one of those in
    parallel, meets more than its SDK's retries allow), as the cloud says it (S3: SlowDown)."""
    if case.name == "aws":
        return Status(503, body=s3_error("SlowDown"), content_type="application/xml", every=3, times=3)
    return Status(503, every=3, times=3)


def injected(proxy, kind) -> int:
    return sum(isinstance(exchange.fault, kind) for exchange in proxy.requests)


# -- transient faults: ridden out, counted --------------------------------------------------------


def test_a_download_rides_out_503s_and_broken_bodies(served_case, proxy, tmp_path, record_property):
    data = os.urandom(DOWN_SIZE)
    served_case.admin.put(served_case.bucket, "faulty.bin", data)
    proxy.add(unavailable(served_case))
    proxy.add(ResetMidBody(after_bytes=300_000, method="GET", path=MEDIA[served_case.name], times=2))
    storage = through(served_case, proxy)

    got = storage.download(served_case.bucket, "faulty.bin", str(tmp_path / "target"))
    record_property("retries", got.retries)

    assert file_sha256(tmp_path / "target") == sha256(data) == got.verified.sha256
    assert got.verified.matched, got.verified
    assert injected(proxy, Status) >= 1 and injected(proxy, ResetMidBody) == 2
    assert got.retries >= injected(proxy, Status) + injected(proxy, ResetMidBody), (got.retries, proxy.requests)


def test_an_upload_rides_out_503s_and_a_broken_request(served_case, proxy, tmp_path, record_property):
    data = os.urandom(UP_SIZE)
    proxy.add(unavailable(served_case))
    proxy.add(ResetMidBody(after_bytes=300_000, direction="request", method="PUT", times=1))
    storage = through(served_case, proxy)

    sent = storage.upload(write(tmp_path / "source", data), served_case.bucket, "faulty-up.bin")
    record_property("retries", sent.retries)

    assert sha256(served_case.admin.get(served_case.bucket, "faulty-up.bin")) == sha256(data) == sent.verified.sha256
    assert sent.verified.matched, sent.verified
    assert injected(proxy, Status) >= 1 and injected(proxy, ResetMidBody) == 1
    assert sent.retries >= injected(proxy, Status) + 1, (sent.retries, proxy.requests)


def test_a_stall_past_the_read_timeout_is_asked_again(served_case, proxy, tmp_path, monkeypatch, record_property):
    module, name, short = READ_TIMEOUTS[served_case.name]
    monkeypatch.setattr(f"{module}.{name}", short)
    data = os.urandom(DOWN_SIZE)
    served_case.admin.put(served_case.bucket, "stalled.bin", data)
    proxy.add(Stall(seconds=6, method="GET", path=MEDIA[served_case.name], times=1))
    storage = through(served_case, proxy)

    started = time.monotonic()
    got = storage.download(served_case.bucket, "stalled.bin", str(tmp_path / "target"))

    record_property("retries", got.retries)
    record_property("seconds", round(time.monotonic() - started, 1))
    assert file_sha256(tmp_path / "target") == sha256(data)
    assert got.retries >= 1 and injected(proxy, Stall) == 1
    assert time.monotonic() - started < FAILURE_BOUND


# -- what is not transient: named, not retried, nothing kept --------------------------------------


@pytest.mark.parametrize("hint", [None, 1000], ids=["by ranges", "in one request"])
def test_a_body_corrupted_on_the_way_fails_naming_expected_and_computed(served_case, proxy, tmp_path, hint):
    data = os.urandom(DOWN_SIZE if hint is None else hint)
    served_case.admin.put(served_case.bucket, "corrupted.bin", data)
    proxy.add(Corrupt(offset=500, method="GET", path=MEDIA[served_case.name], times=1))
    target = tmp_path / "dataset.dat"
    target.write_bytes(b"")  # Galaxy creates its output files before the job runs

    with pytest.raises(IntegrityError) as raised:
        through(served_case, proxy).download(served_case.bucket, "corrupted.bin", str(target), size_hint=hint)

    message = str(raised.value)
    assert f"bject 'corrupted.bin' in {served_case.noun} '{served_case.bucket}'" in message, message
    assert "expected" in message.lower() and ("computed" in message or "calculated" in message), message
    assert injected(proxy, Corrupt) == 1
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 412])
def test_a_permanent_error_on_a_download_is_never_retried(served_case, proxy, tmp_path, status):
    served_case.admin.put(served_case.bucket, "refused.bin", b"x" * 1000)
    proxy.add(Status(status))
    storage = through(served_case, proxy)

    with pytest.raises(StorageError) as raised:
        storage.download(served_case.bucket, "refused.bin", str(tmp_path / "target"), size_hint=1000)
    message = str(raised.value)
    assert "'refused.bin'" in message or f"'{served_case.bucket}' does not exist" in message, message
    if status in (401, 403):
        assert isinstance(raised.value, AccessDenied)
    asked = [(exchange.method, exchange.target) for exchange in proxy.requests]
    assert len(set(asked)) == len(asked), asked  # nothing asked again (GCS asks whether a 404's bucket exists)
    assert storage.take_retries("refused.bin") == 0
    assert os.listdir(tmp_path) == []


def test_a_refused_upload_is_never_retried_and_leaves_no_object(served_case, proxy, tmp_path):
    """A 403 to the upload's first write (S3's and GCS's POST that starts it, Azure's and Swift's first
    PUT): no retry, no object."""
    proxy.add(Status(403, method="PUT"))
    proxy.add(Status(403, method="POST"))
    storage = through(served_case, proxy)

    with pytest.raises(AccessDenied, match="'refused-up.bin'"):
        storage.upload(write(tmp_path / "source", os.urandom(UP_SIZE)), served_case.bucket, "refused-up.bin")
    refused = [exchange.target for exchange in proxy.requests if isinstance(exchange.fault, Status)]
    assert refused and len(set(refused)) == len(refused), proxy.requests  # (Azure's blocks go 4 at a time)
    assert "refused-up.bin" not in served_case.admin.keys(served_case.bucket)


def test_a_server_gone_for_good_fails_a_download_in_bounded_time(served_case, proxy, tmp_path, record_property):
    served_case.admin.put(served_case.bucket, "gone.bin", os.urandom(DOWN_SIZE))
    storage = through(served_case, proxy, **QUICK_FAILURE.get(served_case.name, {}))
    proxy.cut()

    started = time.monotonic()
    with pytest.raises(StorageError, match="'gone.bin'.*unreachable|unreachable.*'gone.bin'"):
        storage.download(served_case.bucket, "gone.bin", str(tmp_path / "target"))
    record_property("seconds", round(time.monotonic() - started, 1))
    assert time.monotonic() - started < FAILURE_BOUND
    assert os.listdir(tmp_path) == []


def test_a_server_gone_mid_upload_fails_in_bounded_time_and_leaves_no_object(
    served_case, proxy, tmp_path, record_property
):
    """The relay dies as the second part (block, chunk, segment) goes up: the upload fails, saying the
    server is unreachable, and no object appears (what the dead server could not be told to drop,
    unfinished parts, stays hidden)."""
    puts = []

    def die_at_the_second_part(method, target, headers):
        puts.append(target)
        if len(puts) >= 2:
            proxy.cut()
            raise ConnectionAbortedError("the server is gone")  # this request goes nowhere either

    proxy.add(Callback(die_at_the_second_part, method="PUT"))
    storage = through(served_case, proxy, **QUICK_FAILURE.get(served_case.name, {}))

    started = time.monotonic()
    with pytest.raises(StorageError, match="'gone-up.bin'"):
        storage.upload(write(tmp_path / "source", os.urandom(UP_SIZE)), served_case.bucket, "gone-up.bin")
    record_property("seconds", round(time.monotonic() - started, 1))
    assert time.monotonic() - started < FAILURE_BOUND
    assert len(puts) >= 2
    assert "gone-up.bin" not in served_case.admin.keys(served_case.bucket)


# -- a job stopped while its parts are in flight ------------------------------------------------------

HOLD = 3  # seconds the relay holds each part before it reads it
#: Parts larger than the sockets' buffers, so that a stop meets a part in the middle of its body.
LARGE_PARTS = {
    "aws": {"part_size": 16 * MiB},
    "azure": {"block_size": 16 * MiB},
    "gcp": {"chunk_size": 16 * MiB},
    "openstack": {"segment_size": 16 * MiB},
}


def test_a_stopped_upload_unwinds_within_a_held_part_and_leaves_no_object(
    served_case, proxy, tmp_path, monkeypatch, record_property
):
    """SIGTERM (``storage.STOPPED``) while parts are half sent, each held ``HOLD`` s by the relay:
    the upload ends as soon as the parts in flight move again, and nothing is asked again after the
    stop. botocore had taken the stop raised in a part's body for a failed request and retried it
    with backoff, five times per part: a scancel'd send took 20 s to end (test_slurm)."""
    stopped = threading.Event()
    monkeypatch.setattr(base, "STOPPED", stopped)
    first_part = threading.Event()

    def hold(method, target, headers):
        first_part.set()
        time.sleep(HOLD)

    proxy.add(Callback(hold, method="PUT"))
    storage = through(served_case, proxy, **LARGE_PARTS[served_case.name])
    source = write(tmp_path / "source", os.urandom(48 * MiB))
    outcome = {}

    def send():
        try:
            storage.upload(source, served_case.bucket, "stopped-up.bin")
        except BaseException as e:
            outcome["error"] = e
        outcome["ended"] = time.monotonic()

    sender = threading.Thread(target=send)
    sender.start()
    assert first_part.wait(60)
    time.sleep(0.5)  # the part's sender fills the socket's buffer and waits
    stopped.set()
    told = time.monotonic()
    sender.join(60)
    record_property("seconds", round(outcome["ended"] - told, 1))
    assert isinstance(outcome.get("error"), base.TransferStopped), outcome
    assert outcome["ended"] - told < HOLD + 3, outcome["ended"] - told
    assert storage.take_retries("stopped-up.bin") == 0
    assert "stopped-up.bin" not in served_case.admin.keys(served_case.bucket)

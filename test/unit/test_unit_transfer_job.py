"""transfer.job and transfer.datatypes, the two steps inside a get job: read and delete the
ticket, redeem it for the credentials, move the objects, fail loudly naming each failed object; then
tell Galaxy the sniffed datatypes."""

import hashlib
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest
from ticket_office import TicketOffice

from galaxy_cloud_storage.contracts import Delegation, MintingFailure
from galaxy_cloud_storage.jobs import credentials_files, write_private_file
from galaxy_cloud_storage.providers import storage
from galaxy_cloud_storage.providers.aws import storage as aws_storage
from galaxy_cloud_storage.providers.cancellation import s3transfer_progress
from galaxy_cloud_storage.transfer import datatypes
from galaxy_cloud_storage.transfer.datatypes import GALAXY_JSON
from galaxy_cloud_storage.transfer.job import END_OF_JOB, main, read_ticket

BUCKET = "job-bucket"
# For tests about something else: no datatypes step (Galaxy's registry takes seconds to import).
NO_SNIFFING = {"file_type": "txt"}


@pytest.fixture
def office():
    office = TicketOffice()
    yield office
    office.close()


def bucket_holding(moto_s3, objects: dict):
    """The test's bucket on the moto server, holding ``objects`` (key -> bytes); its admin client."""
    admin = moto_s3.admin()
    admin.create_bucket(Bucket=BUCKET)
    for key, body in objects.items():
        admin.put_object(Bucket=BUCKET, Key=key, Body=body)
    return admin


def working(job_directory) -> str:
    """The job's working directory, made: where the job runs, and where its ticket is."""
    (job_directory / "working").mkdir(exist_ok=True)
    return str(job_directory / "working")


def write_ticket(job_directory, ticket: dict) -> str:
    """As the handler does (tickets.ticket_file): the ticket in a private file of the job's
    working/, and the job's ``credentials`` config file in configs/ naming it; returns the
    latter's path."""
    (job_directory / "configs").mkdir(exist_ok=True)
    pointer = job_directory / "configs" / "tmp-credentials-config"
    pointer.write_text(write_private_file(working(job_directory), json.dumps(ticket)))
    return str(pointer)


def write_credentials(job_directory, office: TicketOffice, credentials: dict) -> str:
    """A ticket that ``office`` redeems for ``credentials`` (contracts.JobCredentials: a delegation,
    or a failure when it has an ``error``)."""
    minted = MintingFailure(**credentials) if "error" in credentials else Delegation(**credentials)
    return write_ticket(job_directory, office.issue(minted))


def write_job_files(tmp_path, moto_s3, office, manifest: dict, credentials: dict = None):
    manifest_path = tmp_path / "manifest.json"
    manifest_path.write_text(json.dumps({"bucket": BUCKET, **manifest}))
    delegation = credentials or {
        "provider": "aws",
        "settings": {"s3_endpoint_url": moto_s3.endpoint_url},
        "config": {},
        "credentials": {"access_key_id": "k", "secret_access_key": "s", "session_token": None, "expiration": None},
    }
    return str(manifest_path), write_credentials(tmp_path, office, delegation)


def test_get_fails_loudly_naming_each_missing_object(moto_s3, office, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(working(tmp_path))
    bucket_holding(moto_s3, {"here.txt": b"x"})
    items = [
        {"key": key, "path": str(tmp_path / f"out{i}.dat"), "output": f"output{i}"}
        for i, key in enumerate(["here.txt", "gone-1.txt", "gone-2.txt"])
    ]
    manifest, credentials = write_job_files(tmp_path, moto_s3, office, {"items": items, "input_args": {}})

    assert main(["get", manifest, credentials]) == 1

    err = capsys.readouterr().err
    assert "gone-1.txt" in err and "gone-2.txt" in err and "2 of 3 objects failed" in err
    assert credentials_files(str(tmp_path)) == [] and not os.path.exists(credentials)  # read, then deleted
    assert not (tmp_path / "working" / GALAXY_JSON).exists()  # nothing is declared ok


def test_get_sniffs_and_converts(moto_s3, office, tmp_path, monkeypatch):
    monkeypatch.chdir(working(tmp_path))
    bucket_holding(moto_s3, {"a.bed": b"chr1\t1\t2\tx\t0\t+\n", "spaced.txt": b"a  b\r\nc  d\r\n"})
    items = [
        {"key": "a.bed", "path": str(tmp_path / "out0.dat"), "output": "output0"},
        {"key": "spaced.txt", "path": str(tmp_path / "out1.dat"), "output": "output1"},
    ]
    args = {"space_to_tab": True, "to_posix_lines": True}
    manifest, credentials = write_job_files(tmp_path, moto_s3, office, {"items": items, "input_args": args})

    assert main(["get", manifest, credentials]) == 0

    # by the datatypes step, a process of its own beside the transfer: each dataset's ext and hash,
    # the object's, or the converted file's where the conversion changed it
    provided = json.loads((tmp_path / "working" / GALAXY_JSON).read_text())
    assert (tmp_path / "out1.dat").read_bytes() == b"a\tb\nc\td\n"
    assert provided == {
        "output0": {"ext": "bed", "hashes": [sha256_hash(b"chr1\t1\t2\tx\t0\t+\n")]},
        "output1": {"ext": "tabular", "hashes": [sha256_hash(b"a\tb\nc\td\n")]},
    }


def sha256_hash(data: bytes) -> dict:
    return {"hash_function": "SHA-256", "hash_value": hashlib.sha256(data).hexdigest()}


def test_a_datatypes_step_that_fails_fails_the_job(moto_s3, office, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(working(tmp_path))
    bucket_holding(moto_s3, {"a.bed": b"chr1\t1\t2\n"})
    items = [{"key": "a.bed", "path": str(tmp_path / "out0.dat"), "output": "output0"}]
    manifest, credentials = write_job_files(
        tmp_path, moto_s3, office, {"items": items, "datatypes_conf": str(tmp_path / "no-such-datatypes_conf.xml")}
    )

    assert main(["get", manifest, credentials]) == 1
    assert not (tmp_path / "working" / GALAXY_JSON).exists()


@pytest.mark.parametrize("stdin,declared", [("1\n0\ndone\n", ["output1", "output0"]), ("1\n", None)])
def test_the_datatypes_step_declares_what_arrived_only_once_all_did(tmp_path, monkeypatch, stdin, declared):
    """``--as-they-arrive``: each index sniffed as the transfer writes it; nothing declared when
    the transfer ends without ``done`` (it failed or was stopped, and says so itself)."""
    monkeypatch.chdir(working(tmp_path))
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    items = []
    for i, body in enumerate([b"chr1\t1\t2\n", b"@r\nACGT\n+\nIIII\n"]):
        (tmp_path / f"out{i}.dat").write_bytes(body)
        items.append({"key": f"k{i}", "path": str(tmp_path / f"out{i}.dat"), "output": f"output{i}"})
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"bucket": BUCKET, "items": items, "input_args": {}}))

    assert datatypes.main([str(manifest), "--as-they-arrive"]) == 0
    galaxy_json = tmp_path / "working" / GALAXY_JSON
    if declared is None:
        assert not galaxy_json.exists()
    else:
        assert list(json.loads(galaxy_json.read_text())) == declared


def test_credentials_error_is_reported_and_nothing_moves(moto_s3, office, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(working(tmp_path))
    items = [{"key": "x", "path": str(tmp_path / "out0.dat"), "output": "output0"}]
    manifest, credentials = write_job_files(
        tmp_path, moto_s3, office, {"items": items}, {"error": "Your login with 'oidc' has expired."}
    )

    assert main(["get", manifest, credentials]) == 1

    assert "Your login with 'oidc' has expired." in capsys.readouterr().err
    assert credentials_files(str(tmp_path)) == []
    assert not (tmp_path / "out0.dat").exists()


def test_send_keeps_an_object_that_appeared_since_the_request(moto_s3, office, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(working(tmp_path))
    admin = bucket_holding(moto_s3, {"taken.txt": b"theirs"})
    (tmp_path / "d0.dat").write_bytes(b"mine")
    (tmp_path / "d1.dat").write_bytes(b"new")
    items = [
        {"key": "taken.txt", "path": str(tmp_path / "d0.dat")},
        {"key": "free.txt", "path": str(tmp_path / "d1.dat")},
    ]
    manifest, credentials = write_job_files(tmp_path, moto_s3, office, {"items": items, "overwrite_existing": False})

    assert main(["send", manifest, credentials]) == 1

    assert "taken.txt" in capsys.readouterr().err
    assert admin.get_object(Bucket=BUCKET, Key="taken.txt")["Body"].read() == b"theirs"
    assert admin.get_object(Bucket=BUCKET, Key="free.txt")["Body"].read() == b"new"


def test_the_ticket_is_private_whatever_the_umask_and_so_is_galaxys_copy(tmp_path, monkeypatch):
    previous = os.umask(0o000)  # the most open umask a Galaxy could run with
    try:
        pointer = write_ticket(tmp_path, {"url": "http://127.0.0.1:9/x", "ticket": "t"})
        # Galaxy's (and Pulsar's) job script copies working/ and configs/ to _working/ and
        # _configs/ before the tool runs, with cp -R.
        for directory in ("working", "configs"):
            subprocess.run(["cp", "-R", str(tmp_path / directory), str(tmp_path / f"_{directory}")], check=True)
    finally:
        os.umask(previous)
    (tmp_path / "_configs" / "tmpmanifest").write_text("{}")
    found = credentials_files(str(tmp_path))
    assert sorted(os.path.basename(os.path.dirname(path)) for path in found) == ["_working", "working"]
    for path in found:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path

    monkeypatch.chdir(tmp_path / "working")  # the job runs there
    assert read_ticket(pointer) == {"url": "http://127.0.0.1:9/x", "ticket": "t"}

    assert credentials_files(str(tmp_path)) == []
    assert not os.path.exists(pointer) and not (tmp_path / "_configs" / os.path.basename(pointer)).exists()
    assert (tmp_path / "_configs" / "tmpmanifest").exists()  # only the credentials go


def test_a_ticket_works_once(moto_s3, office, tmp_path, capsys, monkeypatch):
    """A second job holding the same ticket (a copy of the file, a replay) gets no credentials."""
    monkeypatch.chdir(working(tmp_path))
    bucket_holding(moto_s3, {"k.txt": b"x"})
    items = [{"key": "k.txt", "path": str(tmp_path / "out0.dat"), "output": "output0"}]
    manifest, credentials = write_job_files(tmp_path, moto_s3, office, {"items": items, "input_args": NO_SNIFFING})
    with open(credentials) as fh, open(tmp_path / "working" / fh.read().strip()) as ticket_fh:
        replay = json.load(ticket_fh)

    assert main(["get", manifest, credentials]) == 0
    assert len(office.redeemed) == 1

    (tmp_path / "out0.dat").unlink()
    again = write_ticket(tmp_path, replay)
    assert main(["get", manifest, again]) == 1
    err = capsys.readouterr().err
    assert "Galaxy refused this job's credentials (403)" in err and "already used" in err, err
    assert not (tmp_path / "out0.dat").exists()


def test_a_busy_galaxy_is_asked_again_and_nothing_else_is(moto_s3, office, tmp_path, capsys, monkeypatch):
    """503 is tickets.DatabaseBusy (the ticket rolled back): asked again. Any other refusal may
    have used the ticket, so it is the job's end."""
    monkeypatch.chdir(working(tmp_path))
    bucket_holding(moto_s3, {"k.txt": b"x"})
    items = [{"key": "k.txt", "path": str(tmp_path / "out0.dat"), "output": "output0"}]
    manifest, credentials = write_job_files(tmp_path, moto_s3, office, {"items": items, "input_args": NO_SNIFFING})
    office.troubles = [503, 503, 503]
    assert main(["get", manifest, credentials]) == 0
    assert office.requests == 4 and len(office.redeemed) == 1
    assert (tmp_path / "out0.dat").read_bytes() == b"x"
    assert "Galaxy's database was busy (3 x 503); the credentials came when asked again" in capsys.readouterr().out

    for trouble in (500, 502, 504):
        (tmp_path / "out0.dat").unlink(missing_ok=True)
        manifest, credentials = write_job_files(tmp_path, moto_s3, office, {"items": items})
        office.troubles, office.requests = [trouble], 0
        assert main(["get", manifest, credentials]) == 1
        assert office.requests == 1, trouble
        assert f"Galaxy refused this job's credentials ({trouble})" in capsys.readouterr().err
        assert not (tmp_path / "out0.dat").exists()


def test_a_galaxy_that_cannot_be_reached_fails_the_job_saying_where(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(working(tmp_path))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"bucket": BUCKET, "items": []}))
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/api/cloud/storage/jobs/x/credentials"
    pointer = write_ticket(tmp_path, {"url": url, "ticket": "t"})

    started = time.monotonic()
    assert main(["send", str(manifest), pointer]) == 1
    err = capsys.readouterr().err
    assert f"Galaxy could not be reached at {url}" in err, err
    assert time.monotonic() - started < 30  # a few retries with backoff, not a hang
    assert credentials_files(str(tmp_path)) == []


def test_datatypes_step_is_skipped_for_an_explicit_file_type(tmp_path, monkeypatch):
    monkeypatch.chdir(working(tmp_path))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "bucket": BUCKET,
                "items": [{"key": "x", "path": "/nonexistent", "output": "output0"}],
                "input_args": {"file_type": "tabular"},
            }
        )
    )
    assert datatypes.main([str(manifest)]) == 0
    assert not (tmp_path / "working" / GALAXY_JSON).exists()


def test_without_galaxys_datatypes_galaxy_is_left_to_sniff(tmp_path, monkeypatch, capsys):
    """On a node without galaxy-data (a Pulsar node): each dataset is declared ``_sniff_``, and a
    conversion, which needs Galaxy's code, fails the job rather than leave the bytes unconverted."""
    monkeypatch.chdir(working(tmp_path))
    monkeypatch.setattr(datatypes, "has_galaxy_datatypes", lambda: False)
    manifest = tmp_path / "manifest.json"
    items = [{"key": "x", "path": str(tmp_path / "out0.dat"), "output": "output0"}]
    manifest.write_text(json.dumps({"bucket": BUCKET, "items": items, "input_args": {}}))
    assert datatypes.main([str(manifest)]) == 0
    assert json.loads((tmp_path / "working" / GALAXY_JSON).read_text()) == {"output0": {"ext": "_sniff_"}}

    (tmp_path / "working" / GALAXY_JSON).unlink()
    manifest.write_text(json.dumps({"bucket": BUCKET, "items": items, "input_args": {"space_to_tab": True}}))
    assert datatypes.main([str(manifest)]) == 1
    assert "needs Galaxy's datatypes" in capsys.readouterr().err
    assert not (tmp_path / "working" / GALAXY_JSON).exists()


def test_galaxys_datatypes_are_found_in_galaxys_venv():
    assert datatypes.has_galaxy_datatypes()


@pytest.fixture(autouse=True)
def sigterm_restored():
    """``main`` installs its SIGTERM handler in this process: put pytest's back, the flag down, and
    disarm the exit its handler set after STOP_GRACE, which would end pytest itself (exit 143)."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)
    storage.STOPPED.clear()
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer) and thread.function is os._exit:
            thread.cancel()


def test_a_send_stopped_by_sigterm_aborts_its_upload_and_does_not_say_it_ended(
    moto_s3, office, tmp_path, capsys, monkeypatch
):
    """As ``scancel`` stops a job: SIGTERM while the parts go up. The multipart upload is aborted,
    and stdout lacks END_OF_JOB, which the tools' <stdio> requires (Galaxy gets no exit code
    from a job its batch system killed)."""
    monkeypatch.chdir(working(tmp_path))
    admin = bucket_holding(moto_s3, {})
    (tmp_path / "d0.dat").write_bytes(os.urandom(12 * 1024 * 1024))
    terminated = []

    def progress_then_sigterm(count):
        def callback(sent: int) -> None:
            if not terminated:  # once, when the first part's bytes go
                terminated.append(sent)
                os.kill(os.getpid(), signal.SIGTERM)
            s3transfer_progress(count)(sent)

        return callback

    monkeypatch.setattr(aws_storage, "s3transfer_progress", progress_then_sigterm)
    settings = {"s3_endpoint_url": moto_s3.endpoint_url, "part_size": 5 * 1024 * 1024}
    delegation = {
        "provider": "aws",
        "settings": settings,
        "config": {},
        "credentials": {"access_key_id": "k", "secret_access_key": "s", "session_token": None, "expiration": None},
    }
    items = [{"key": "stopped.bin", "path": str(tmp_path / "d0.dat")}]
    manifest, credentials = write_job_files(tmp_path, moto_s3, office, {"items": items}, delegation)

    assert main(["send", manifest, credentials]) == 128 + signal.SIGTERM

    out, err = capsys.readouterr()
    assert terminated and "stopped (SIGTERM)" in err
    assert END_OF_JOB not in out and "Sent '" not in out
    assert "Contents" not in admin.list_objects_v2(Bucket=BUCKET)
    assert admin.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_job_that_ran_to_its_end_says_so(moto_s3, office, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(working(tmp_path))
    moto_s3.admin().create_bucket(Bucket=BUCKET)
    missing = {"key": "none.txt", "path": str(tmp_path / "out0.dat"), "output": "output0"}
    manifest, credentials = write_job_files(tmp_path, moto_s3, office, {"items": [missing], "input_args": {}})

    assert main(["get", manifest, credentials]) == 1  # a failure, reported: the job still ran to its end

    assert capsys.readouterr().out.splitlines()[-1] == END_OF_JOB


def test_a_stopped_job_exits_after_its_grace_even_if_a_transfer_cannot_unwind():
    """Galaxy's local runner never sends the SIGKILL after its SIGTERM (it checks only the job
    script, already gone): a transfer stuck on a cloud that stopped answering must not live on."""
    stuck = (
        "import os, signal, time\n"
        "from galaxy_cloud_storage.transfer import job\n"
        "job.STOP_GRACE = 0.5\n"
        "signal.signal(signal.SIGTERM, job.stop)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(60)  # a transfer that does not notice\n"
    )
    started = time.monotonic()
    finished = subprocess.run([sys.executable, "-c", stuck], timeout=30)
    assert finished.returncode == 128 + signal.SIGTERM
    assert time.monotonic() - started < 20

"""Transfer jobs through a real Slurm queue: Galaxy's CLI job runner with the Slurm plugin, routed by
config_samples/job_conf.slurm.yml.sample as an admin would use it, against a one-node Slurm cluster
on 127.0.0.1 (galaxy_cloud_storage_testing/slurm_cluster.py; ``apt-get install slurm-wlm munge``).

Two Galaxies, one per class, each with its own cluster started before Galaxy and stopped after it:

- Swift with a stored Swift v1 key (tempauth), whose tokens are made to live ``TOKEN_LIFE`` seconds:
  a get and a send, and a get and a send that wait in the queue (the node busy with another job)
  for longer than a token lives, which still transfer;
- S3 through alice's OIDC login (moto's STS AssumeRoleWithWebIdentity), secretless: a get and a
  send, and a send of a 200 MiB dataset cancelled with ``scancel`` while its parts go up.

That a job ran in Slurm is shown by Slurm itself: the job's external id (Galaxy's admin API) is a
Slurm job that completed, named after the Galaxy job, its output file in the job's directory.
"""

import hashlib
import json
import os
import shutil
import tempfile
import time
from datetime import datetime

import pytest
import requests
import yaml
from base import CloudStorageTestCase, LocalCloudTestCase
from galaxy_test.base.populators import DatasetPopulator
from oidc_base import AliceSecretlessS3TestCase

from galaxy_cloud_storage.jobs import credentials_files
from galaxy_cloud_storage.transfer.job import STOP_GRACE
from galaxy_cloud_storage_testing.fault_proxy import Callback
from galaxy_cloud_storage_testing.localgalaxy import processes_where
from galaxy_cloud_storage_testing.slurm_cluster import SlurmCluster

pytestmark = pytest.mark.slurm

HERE = os.path.dirname(os.path.abspath(__file__))
JOB_CONF_SAMPLE = os.path.join(HERE, os.pardir, os.pardir, "config_samples", "job_conf.slurm.yml.sample")
TOKEN_LIFE = 30  # seconds a Swift token lives in the Swift class (tempauth's token_life)
QUEUE_WAIT = TOKEN_LIFE + 10  # seconds the waiting jobs stay in the queue: longer than a token lives
MiB = 1024 * 1024
LARGE_SIZE = 200 * MiB
UPLOAD_TIMEOUT = 300
ENDED = ("ok", "error", "failed", "deleted")
HOLD = 3  # seconds the fault relay holds each part of the cancelled send


def transfer_processes(job_directory: str) -> list[int]:
    """The pids of transfer processes whose command line names ``job_directory``."""

    def runs_the_transfer(pid: int) -> bool:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            command = fh.read().decode(errors="replace")
        return "galaxy_cloud_storage.transfer.job" in command and job_directory in command

    return processes_where(runs_the_transfer)


class SlurmJobsTestCase(CloudStorageTestCase):
    """First among a test class's bases: a Slurm cluster for the class, started before the other
    bases start their servers and Galaxy, and Galaxy's transfer jobs routed to it by the sample."""

    slurm: SlurmCluster

    @classmethod
    def setUpClass(cls):
        cls.slurm_dir = tempfile.mkdtemp(prefix="gcs-slurm-")
        cls.slurm = SlurmCluster(cls.slurm_dir).start()
        # Galaxy's job handler is this process: its sbatch, squeue and scancel find the cluster here.
        cls.saved_slurm_env = {name: os.environ.get(name) for name in cls.slurm.env}
        os.environ.update(cls.slurm.env)
        try:
            super().setUpClass()
        except BaseException:
            cls._stop_slurm()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls._stop_slurm()

    @classmethod
    def _stop_slurm(cls):
        cls.slurm.stop()
        for name, value in cls.saved_slurm_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(cls.slurm_dir, ignore_errors=True)

    @classmethod
    def handle_galaxy_config_kwds(cls, config):
        super().handle_galaxy_config_kwds(config)
        with open(JOB_CONF_SAMPLE) as fh:
            job_conf = yaml.safe_load(fh)  # as the admin has it: nothing in it is this machine's
        path = os.path.join(tempfile.mkdtemp(prefix="gcs-job-conf-"), "job_conf.yml")
        with open(path, "w") as fh:
            yaml.safe_dump(job_conf, fh)
        config["job_config_file"] = path
        config["cleanup_job"] = "never"  # the job directories stay, to look at after the job

    def setUp(self):
        super().setUp()
        self.dataset_populator = DatasetPopulator(self.galaxy_interactor)
        self.history_id = self.dataset_populator.new_history()

    # -- requests --------------------------------------------------------------------------------

    def cloud_get(self, objects):
        payload = {"history_id": self.history_id, "authz_id": self.authz_id, "bucket": self.cloud.bucket}
        return self._post("cloud/storage/get", {**payload, "objects": objects}, json=True)

    def cloud_send(self, dataset_id: str) -> dict:
        """A send of one dataset: its label (``object``, ``job_id``)."""
        payload = {"history_id": self.history_id, "authz_id": self.authz_id, "bucket": self.cloud.bucket}
        response = self._post("cloud/storage/send", {**payload, "dataset_ids": [dataset_id]}, json=True)
        assert response.status_code == 200, response.text
        return json.loads(response.json()["sent_dataset_labels"][0])

    def new_dataset(self, content: str, name: str) -> dict:
        """A dataset uploaded to the history, once ok (a busy machine takes longer than the
        populator's default minute)."""
        dataset = self.dataset_populator.new_dataset(self.history_id, content=content, name=name)
        self.dataset_populator.wait_for_history(self.history_id, assert_ok=True, timeout=UPLOAD_TIMEOUT)
        return dataset

    def start_get(self, key: str, body: bytes) -> dict:
        """The object put in the bucket and a get of it requested: the summary of its dataset."""
        self.cloud.admin.put_object(self.cloud.bucket, key, body)
        response = self.cloud_get([key])
        assert response.status_code == 200, response.text
        return response.json()[0]

    # -- Galaxy's job and Slurm's ------------------------------------------------------------------

    def slurm_job_of(self, job_id: str, timeout: float = 120) -> str:
        """The Slurm job id of Galaxy job ``job_id``, once the handler has submitted it (the
        runner's external id, which the admin API shows)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self._get(f"jobs/{job_id}", data={"full": True}, admin=True).json()
            if job.get("external_id"):
                return job["external_id"]
            assert job["state"] not in ENDED, job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} was not submitted to Slurm within {timeout} s")

    def assert_ran_in_slurm(self, job_id: str) -> dict:
        """Slurm's record of the Slurm job that ran Galaxy job ``job_id``, which completed."""
        slurm_id = self._get(f"jobs/{job_id}", data={"full": True}, admin=True).json()["external_id"]
        assert slurm_id, f"job {job_id} has no external id: it did not go through the CLI runner"
        details = self.slurm.job_details(slurm_id)
        assert details["JobState"] == "COMPLETED", details
        assert details["JobName"].startswith(f"g{self._app.security.decode_id(job_id)}_cloud_storage_"), details
        # sbatch -o: the runner names the Slurm output file in the Galaxy job's directory.
        assert os.path.dirname(details["StdOut"]) == self.job_directory(job_id), details
        return details

    def wait_for_job_ok(self, job_id: str) -> dict:
        job = self.wait_for_job(job_id)
        assert job["state"] == "ok", job
        return job

    # -- the test both classes run -------------------------------------------------------------------

    def get_and_send_through_slurm(self):
        body = b"@read1\nACGT\n+\nIIII\n" * 1000
        summary = self.start_get("reads/through-slurm.fastq", body)
        self.wait_for_job_ok(summary["job_id"])
        assert self.dataset_bytes(summary["id"]) == body
        self.assert_ran_in_slurm(summary["job_id"])

        dataset = self.new_dataset("sent through Slurm\n", "slurm results.txt")
        label = self.cloud_send(dataset["id"])
        self.wait_for_job_ok(label["job_id"])
        assert self.cloud.admin.get_object(self.cloud.bucket, label["object"]) == b"sent through Slurm\n"
        self.assert_ran_in_slurm(label["job_id"])
        for job_id in (summary["job_id"], label["job_id"]):
            assert credentials_files(self.job_directory(job_id)) == []


class TestSwiftJobsInSlurm(SlurmJobsTestCase, LocalCloudTestCase):
    """Swift's own v1 auth with a stored key; tempauth's tokens live TOKEN_LIFE seconds."""

    provider = "openstack"
    cloud_options = {"token_life": TOKEN_LIFE}

    def setUp(self):
        super().setUp()
        if not hasattr(type(self), "authz_id"):
            record = self._post("cloud/authz", {"provider": "openstack", "config": self.cloud.authz_config}, json=True)
            assert record.status_code == 200, record.text
            type(self).authz_id = record.json()["id"]

    def test_get_and_send_run_in_slurm(self):
        self.get_and_send_through_slurm()

    def test_jobs_that_waited_in_the_queue_longer_than_a_token_lives_still_transfer(self):
        body = b"waited in the queue\n"
        dataset = self.new_dataset("sent after a wait\n", "waited.txt")
        busy = self.slurm.occupy_node()
        try:
            summary = self.start_get("queued/waited.txt", body)
            label = self.cloud_send(dataset["id"])
            job_ids = (summary["job_id"], label["job_id"])
            slurm_ids = [self.slurm_job_of(job_id) for job_id in job_ids]
            time.sleep(QUEUE_WAIT)
            for job_id, slurm_id in zip(job_ids, slurm_ids, strict=True):
                details = self.slurm.job_details(slurm_id)
                # Waiting for the busy node (the first), or behind the first (the second).
                assert details["JobState"] == "PENDING" and details["Reason"] in ("Resources", "Priority"), details
                assert self._get(f"jobs/{job_id}").json()["state"] == "queued"
        finally:
            self.slurm.cancel(busy)

        config = self.cloud.authz_config  # tempauth's tokens live TOKEN_LIFE seconds
        auth = {"X-Auth-User": config["swift_user"], "X-Auth-Key": config["swift_key"]}
        token = requests.get(self.cloud.settings["v1_auth_url"], headers=auth, timeout=30)
        assert token.ok and 0 < int(token.headers["X-Auth-Token-Expires"]) <= TOKEN_LIFE, token.headers
        self.wait_for_job_ok(summary["job_id"])
        assert self.dataset_bytes(summary["id"]) == body
        self.wait_for_job_ok(label["job_id"])
        assert self.cloud.admin.get_object(self.cloud.bucket, label["object"]) == b"sent after a wait\n"
        for job_id in job_ids:
            details = self.assert_ran_in_slurm(job_id)
            # Every token minted before the job left the queue had expired by then.
            waited = datetime.fromisoformat(details["StartTime"]) - datetime.fromisoformat(details["SubmitTime"])
            assert waited.total_seconds() >= QUEUE_WAIT > TOKEN_LIFE, details
            assert credentials_files(self.job_directory(job_id)) == []


class TestS3WebIdentityJobsInSlurm(SlurmJobsTestCase, AliceSecretlessS3TestCase):
    """S3 (moto) through alice's OIDC login: no stored secret anywhere. Through the fault relay,
    which holds the cancelled send's parts back so that the cancel meets them in flight."""

    through_fault_proxy = True

    def test_get_and_send_run_in_slurm(self):
        self.get_and_send_through_slurm()

    def test_a_send_cancelled_in_slurm_mid_transfer_ends_in_error_and_leaves_nothing(self):
        """Galaxy's Slurm CLI plugin takes a job that left squeue for done, and a missing exit code
        file (the job script was killed) for exit code 0: before the tools' END_OF_JOB line this
        job ended ``ok``, its multipart upload left in the bucket."""
        body = os.urandom(LARGE_SIZE)
        summary = self.start_get("large/reads.bin", body)
        self.wait_for_job_ok(summary["job_id"])
        assert hashlib.sha256(self.dataset_bytes(summary["id"])).digest() == hashlib.sha256(body).digest()

        # Each part held HOLD s (4 at a time, 13 parts: at least 12 s of upload). Unheld, moto took
        # the 200 MiB in about as long as a poll below, and CI once saw the send end ok before it.
        self.fault_proxy.add(Callback(method="PUT", path=r"[?&]partNumber=", fn=lambda *_: time.sleep(HOLD)))
        label = self.cloud_send(summary["id"])
        key, job_id = label["object"], label["job_id"]
        slurm_id = self.slurm_job_of(job_id)
        self.wait_until_parts_go_up(key, job_id)

        self.slurm.cancel(slurm_id)

        job = self.wait_for_job(job_id)
        assert self.slurm.wait_for_state(slurm_id, ("CANCELLED",)) == "CANCELLED"
        assert job["state"] == "error", job
        assert "did not run to its end" in json.dumps(job)
        # Slurm says CANCELLED, and Galaxy error, once the job script is gone; the transfer gets
        # SIGTERM with it and unwinds for a while yet (here until its held parts move again: about
        # HOLD s), well within STOP_GRACE, after which it exits anyway, its cleanup undone.
        self.wait_for_transfer_to_exit(job_id, timeout=STOP_GRACE - 5)
        # Nothing was sent, nothing says it was, nothing is left half-sent, and no ticket stays.
        assert key not in self.cloud.admin.list_keys(self.cloud.bucket)
        assert key not in self.cloud.admin.multipart_uploads(self.cloud.bucket)
        assert not [line for line in (job.get("tool_stdout") or "").splitlines() if line.startswith("Sent ")], job
        assert credentials_files(self.job_directory(job_id)) == []

    def wait_for_transfer_to_exit(self, job_id: str, timeout: float) -> None:
        """Until no process runs the job's transfer (found by its job directory in /proc)."""
        directory = self.job_directory(job_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not transfer_processes(directory):
                return
            time.sleep(0.2)
        raise AssertionError(f"the transfer of job {job_id} still runs {timeout} s after its job ended")

    def wait_until_parts_go_up(self, key: str, job_id: str, timeout: float = 120) -> None:
        """Until the send's multipart upload has begun (S3 lists it): the transfer is under way."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if key in self.cloud.admin.multipart_uploads(self.cloud.bucket):
                return
            assert self._get(f"jobs/{job_id}").json()["state"] not in ENDED, "the send ended before it was cancelled"
            time.sleep(0.1)
        raise AssertionError(f"no multipart upload of {key} began within {timeout} s")

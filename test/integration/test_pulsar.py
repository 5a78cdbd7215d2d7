"""The transfer jobs on a Pulsar node: a real Pulsar server (PyPI pulsar-app, a venv of its own
with the plugin installed without Galaxy: galaxy_cloud_storage_testing/pulsar_server.py) on
127.0.0.1, in a mount namespace where Galaxy's files and venv are hidden, and Galaxy's Pulsar REST
runner routed there by config_samples/job_conf.pulsar.yml.sample with only Pulsar's URL and token
filled in.

Galaxy sends the job's config files, working directory (where the ticket is) and inputs to Pulsar
and fetches its outputs over Pulsar's HTTP API; the node reaches the cloud directly and Galaxy's
web API only to redeem the job's ticket. Galaxy sniffs the new datasets itself, since the node has
no datatypes registry. Galaxy keeps every job directory (``cleanup_job: never``), and so does
Pulsar (Galaxy asks it to clean up only when it cleans up its own): the tests look at both sides.

Two classes, one Galaxy and one Pulsar each: Swift with a stored Swift v1 key, and S3 through
alice's OIDC login (secretless).
"""

import json
import os
import shutil
import tempfile
import time

import pytest
import yaml
from base import CloudStorageTestCase, LocalCloudTestCase
from galaxy.model import Job
from galaxy_test.base.populators import DatasetPopulator
from oidc_base import AliceSecretlessS3TestCase

from galaxy_cloud_storage.jobs import credentials_files
from galaxy_cloud_storage.pulsar_recovery import end_interrupted_jobs, MESSAGE
from galaxy_cloud_storage_testing import moto_aws, REPOSITORY
from galaxy_cloud_storage_testing.fault_proxy import Callback
from galaxy_cloud_storage_testing.pulsar_server import PulsarServer

pytestmark = pytest.mark.pulsar

SAMPLE = os.path.join(REPOSITORY, "config_samples", "job_conf.pulsar.yml.sample")
PULSAR_ENVIRONMENT = "pulsar_transfers"  # the sample's environment for the transfer tools
ENDED = ("ok", "error", "failed", "deleted")
LARGE_SIZE = 256 * 1024 * 1024  # a get that lasts long enough to stop Pulsar in the middle of it
HOLD = 1  # seconds the fault relay holds each GET of the interrupted get's object
BED = b"chr1\t100\t200\tpeak1\t0\t+\nchr1\t300\t400\tpeak2\t0\t-\n"


def pulsar_job_conf(url: str, private_token: str) -> dict:
    """The sample job_conf, with this Pulsar's address and token: what an admin fills in."""
    with open(SAMPLE) as fh:
        conf = yaml.safe_load(fh)
    conf["execution"]["environments"][PULSAR_ENVIRONMENT].update(url=url, private_token=private_token)
    return conf


def files_holding(directory: str, needle: str) -> list[str]:
    holding = []
    for parent, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(parent, name)
            if os.path.isfile(path):
                with open(path, "rb") as fh:
                    if needle.encode() in fh.read():
                        holding.append(os.path.relpath(path, directory))
    return holding


class PulsarJobsTestCase(CloudStorageTestCase):
    """First among a test class's bases: a Pulsar for the class, started before the other bases
    start their servers and Galaxy, and Galaxy's transfer jobs routed to it by the sample."""

    pulsar: PulsarServer

    @classmethod
    def setUpClass(cls):
        # Not in /tmp, which is hidden from Pulsar with the tests' Galaxies (pulsar_server.GALAXY_SIDE).
        cls.pulsar_dir = tempfile.mkdtemp(prefix="gcs-pulsar-", dir="/var/tmp")
        cls.pulsar = PulsarServer(cls.pulsar_dir)
        try:
            cls.pulsar.start()
            super().setUpClass()
        except BaseException:
            cls._stop_pulsar()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls._stop_pulsar()

    @classmethod
    def _stop_pulsar(cls):
        cls.pulsar.stop()
        shutil.rmtree(cls.pulsar_dir, ignore_errors=True)

    @classmethod
    def handle_galaxy_config_kwds(cls, config):
        super().handle_galaxy_config_kwds(config)
        path = os.path.join(tempfile.mkdtemp(prefix="gcs-job-conf-"), "job_conf.yml")
        with open(path, "w") as fh:
            yaml.safe_dump(pulsar_job_conf(cls.pulsar.url, cls.pulsar.private_token), fh)
        config["job_config_file"] = path
        config["cleanup_job"] = "never"  # the job directories stay, to look at after the job

    def setUp(self):
        super().setUp()
        self.dataset_populator = DatasetPopulator(self.galaxy_interactor)
        self.history_id = self.dataset_populator.new_history()

    # -- requests --------------------------------------------------------------------------------

    def start_get(self, key: str, body: bytes, **input_args) -> dict:
        """The object put in the bucket and a get of it requested: the summary of its dataset."""
        self.cloud.admin.put_object(self.cloud.bucket, key, body)
        payload = {"history_id": self.history_id, "authz_id": self.authz_id, "bucket": self.cloud.bucket}
        if input_args:
            payload["input_args"] = input_args
        response = self._post("cloud/storage/get", {**payload, "objects": [key]}, json=True)
        assert response.status_code == 200, response.text
        return response.json()[0]

    def start_send(self, dataset_id: str) -> dict:
        """A send of one dataset: its label (``object``, ``job_id``)."""
        payload = {"history_id": self.history_id, "authz_id": self.authz_id, "bucket": self.cloud.bucket}
        response = self._post("cloud/storage/send", {**payload, "dataset_ids": [dataset_id]}, json=True)
        assert response.status_code == 200, response.text
        return json.loads(response.json()["sent_dataset_labels"][0])

    def wait_for_job_ok(self, job_id: str) -> dict:
        job = self.wait_for_job(job_id)
        assert job["state"] == "ok", job
        return job

    def ticket_of(self, job_id: str) -> str:
        """The job's ticket, from Galaxy's job directory, where it stays until the job ends (the
        job deletes the node's copy as it redeems it)."""
        _, found = self.wait_for_credentials(job_id)
        with open(found[0]) as fh:
            return json.load(fh)["ticket"]

    # -- Galaxy's job and Pulsar's ---------------------------------------------------------------

    def pulsar_job_directory(self, job_id: str, timeout: float = 120) -> str:
        """The job's directory in Pulsar's staging directory, once Galaxy has submitted it there
        (the runner's external id, which the admin API shows, names it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self._get(f"jobs/{job_id}", data={"full": True}, admin=True).json()
            if job.get("external_id"):
                return os.path.join(self.pulsar.staging_directory, job["external_id"])
            assert job["state"] not in ENDED, job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} was not submitted to Pulsar within {timeout} s")

    def assert_ran_on_pulsar(self, job_id: str, action: str) -> str:
        """The job ran on Pulsar with the node's own venv: its directory there holds the command
        Pulsar ran, with the node's paths, and its exit code 0. Returns that directory."""
        directory = self.pulsar_job_directory(job_id)
        with open(os.path.join(directory, "tool_script.sh")) as fh:
            tool_script = fh.read()
        assert f"python -m galaxy_cloud_storage.transfer.job {action} '{directory}/" in tool_script, tool_script
        with open(os.path.join(directory, "command.sh")) as fh:
            assert f'GALAXY_VIRTUAL_ENV="{self.pulsar.venv}"' in fh.read()  # the node's python, not Galaxy's
        with open(os.path.join(directory, "return_code")) as fh:
            assert fh.read().strip() == "0"
        session = self._app.model.session
        session.expire_all()
        job = session.get(Job, self._app.security.decode_id(job_id))
        assert (job.tool_id, job.destination_id) == (f"cloud_storage_{action}", PULSAR_ENVIRONMENT)
        assert job.job_runner_name.startswith("pulsar"), job.job_runner_name
        return directory

    def assert_no_credential_on_pulsar(self, job_ids: list[str], needles: dict) -> None:
        """After the jobs: none of ``needles`` (name -> value: the tickets, the stored secrets,
        what the cloud issued) in Pulsar's staging directory or its log, no ticket file left on
        either side."""
        log = self.pulsar.log()
        for name, value in needles.items():
            assert files_holding(self.pulsar.staging_directory, value) == [], name
            assert value not in log, name
        assert files_holding(self.pulsar.staging_directory, '"ticket"') == []  # no ticket file at all
        for job_id in job_ids:
            assert credentials_files(self.pulsar_job_directory(job_id)) == []
            assert credentials_files(self.job_directory(job_id)) == []

    def issued_credentials(self) -> dict:
        """What the cloud issued to the jobs (name -> value), to search for on the node."""
        return {}

    # -- the test both classes run -----------------------------------------------------------------

    def get_and_send_through_pulsar(self):
        summary = self.start_get("peaks/through-pulsar.bed", BED)
        tickets = {"the get's ticket": self.ticket_of(summary["job_id"])}
        self.wait_for_job_ok(summary["job_id"])
        assert self.dataset_bytes(summary["id"]) == BED
        directory = self.assert_ran_on_pulsar(summary["job_id"], "get")
        # The bytes were written on the node and fetched from it by Galaxy.
        outputs = os.path.join(directory, "outputs")
        assert [open(os.path.join(outputs, name), "rb").read() for name in os.listdir(outputs)] == [BED]
        # Sniffed by Galaxy, which has the datatypes registry, with the datatype's metadata.
        details = self._get(f"datasets/{summary['id']}").json()
        assert (details["extension"], details["metadata_columns"]) == ("bed", 6), details
        assert details.get("metadata_strandCol") == 6, details  # set by BED's own set_meta

        content = "sent through Pulsar\n" * 100
        dataset = self.dataset_populator.new_dataset(self.history_id, content=content, name="pulsar.txt", wait=True)
        label = self.start_send(dataset["id"])
        tickets["the send's ticket"] = self.ticket_of(label["job_id"])
        self.wait_for_job_ok(label["job_id"])
        assert self.cloud.admin.get_object(self.cloud.bucket, label["object"]) == content.encode()
        directory = self.assert_ran_on_pulsar(label["job_id"], "send")
        # Galaxy sent the dataset to the node: the transfer read it there.
        inputs = os.path.join(directory, "inputs")
        assert [open(os.path.join(inputs, name)).read() for name in os.listdir(inputs)] == [content]

        needles = {**tickets, **{f"stored secret #{i}": s for i, s in enumerate(self.cloud.secrets)}}
        self.assert_no_credential_on_pulsar(
            [summary["job_id"], label["job_id"]], {**needles, **self.issued_credentials()}
        )


class TestSwiftJobsOnPulsar(PulsarJobsTestCase, LocalCloudTestCase):
    """Swift's own v1 auth with a stored key (tempauth's tokens all begin with ``AUTH_tk``).
    Through the fault relay, which slows the interrupted get so that Pulsar stops in its middle."""

    provider = "openstack"
    through_fault_proxy = True

    def setUp(self):
        super().setUp()
        if not hasattr(type(self), "authz_id"):
            record = self._post("cloud/authz", {"provider": "openstack", "config": self.cloud.authz_config}, json=True)
            assert record.status_code == 200, record.text
            type(self).authz_id = record.json()["id"]

    def test_get_and_send_run_on_pulsar(self):
        self.get_and_send_through_pulsar()
        # Every Swift token the jobs got begins so; none is on the node.
        assert files_holding(self.pulsar.staging_directory, "AUTH_tk") == []
        assert "AUTH_tk" not in self.pulsar.log()

    def test_a_pulsar_stopped_mid_transfer_ends_the_job_in_error(self):
        """The node goes down mid-get and comes back, with galaxy-cloud-storage-pulsar-recover run
        before Pulsar starts (README "Pulsar"): the job ends in error saying why, never ok."""
        body = os.urandom(LARGE_SIZE)
        # Each range held HOLD s: Swift serves 256 MiB in about 1.5 s, as long as a poll below can
        # take on a busy machine.
        self.fault_proxy.add(Callback(method="GET", path="interrupted", fn=lambda *_: time.sleep(HOLD)))
        summary = self.start_get("large/interrupted.bin", body, file_type="data")
        del body
        job_id = summary["job_id"]
        ticket = self.ticket_of(job_id)
        directory = self.pulsar_job_directory(job_id)
        self.wait_until_output_grows(directory, job_id)

        self.pulsar.stop()  # the server and the transfer it runs, as a node going down
        try:
            time.sleep(3)
            # Galaxy cannot reach Pulsar, and keeps the job as it was, asking again.
            assert self._get(f"jobs/{job_id}").json()["state"] in ("queued", "running")
            assert end_interrupted_jobs(self.pulsar.staging_directory) == [os.path.basename(directory)]
        finally:
            self.pulsar.start()
        job = self.wait_for_job(job_id, timeout=120)
        assert job["state"] == "error", job
        assert MESSAGE in job["tool_stderr"], job
        dataset = self._get(f"datasets/{summary['id']}").json()
        assert dataset["state"] == "error", dataset
        self.assert_no_credential_on_pulsar([job_id], {"the get's ticket": ticket})

    def wait_until_output_grows(self, directory: str, job_id: str, timeout: float = 120) -> None:
        """Until the get's output file on the node holds some of the object, not all of it."""
        outputs = os.path.join(directory, "outputs")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            names = os.listdir(outputs) if os.path.isdir(outputs) else []
            sizes = [os.path.getsize(os.path.join(outputs, name)) for name in names]
            if any(0 < size < LARGE_SIZE for size in sizes):
                return
            assert self._get(f"jobs/{job_id}").json()["state"] not in ENDED, "the get ended before Pulsar stopped"
            time.sleep(0.05)
        raise AssertionError(f"the output of job {job_id} did not begin on Pulsar within {timeout} s")


class TestS3WebIdentityJobsOnPulsar(PulsarJobsTestCase, AliceSecretlessS3TestCase):
    """S3 (moto) through alice's OIDC login: no stored secret anywhere."""

    def issued_credentials(self) -> dict:
        issued = {}
        for i, credentials in enumerate(moto_aws.issued_credentials(self.cloud.settings["s3_endpoint_url"])):
            for field in ("access_key_id", "secret_access_key", "session_token"):
                issued[f"moto {field} #{i}"] = credentials[field]
        stored = self.stored_tokens(self.alice)
        issued.update({f"OIDC {name}": stored[name] for name in ("id_token", "access_token", "refresh_token")})
        assert len([name for name in issued if name.startswith("moto ")]) >= 2 * 3, issued.keys()
        return issued

    def test_get_and_send_run_on_pulsar(self):
        self.get_and_send_through_pulsar()

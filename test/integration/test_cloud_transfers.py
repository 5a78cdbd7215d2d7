"""get and send, the seeds' walkthrough, against each cloud's real server on 127.0.0.1, in a real
Galaxy with the plugin: one suite (``CloudTransferSuite``), one class per cloud, one Galaxy each.

The authorization of each class is the one its cloud's server can check here (``LocalCloud.mode``):
a stored key for moto, a Microsoft-style client credential exchanged for a bearer token that
Azurite checks, a service-account key exchanged at a Google-style token endpoint, Swift's own v1
auth, and a Keystone application credential for Swift behind a real Keystone. Where a credential
scoped to one bucket can't tell a missing bucket from a denied one (Azure's container SAS and
Swift's container ACLs answer 403 for both, as in production), "denied" is shown with such a
credential and "missing" with an account-wide one. The secretless exchanges of a user's OIDC login
have their own tests.
"""

import hashlib
import json
import os
import re
import time

from base import LocalCloudTestCase
from folder_suite import FolderSuite, MAX_OBJECTS
from galaxy.model import HistoryDatasetAssociation
from galaxy_test.base.populators import DatasetPopulator

from galaxy_cloud_storage.providers import cloud
from galaxy_cloud_storage_testing.fault_proxy import ResetMidBody, Status

MiB = 1024 * 1024
COMMON_KEYS_AND_BYTES = {
    "peaks/rep1.bed": b"chr1\t100\t200\tpeak1\t0\t+\nchr1\t300\t400\tpeak2\t0\t-\n",
    "with space.txt": b"hello world\n",
    "unicod\u00e9/r\u00e9sum\u00e9.tsv": "a\tb\n\u00e9\t1\n".encode(),
    "deep/er/still/n\u00e5me.txt": b"nested\n",
    "empty.dat": b"",
}
# Keys that would escape a directory if used as a path. S3 and GCS keep them as they are; Azure's
# and Swift's URLs put the name in the path, where HTTP normalises "..", so those clouds can't
# hold them.
PATH_ESCAPING_KEYS_AND_BYTES = {
    "../escape.txt": b"must stay inside the job directory\n",
    "/leading-slash.txt": b"leading slash\n",
}
LARGE_SIZE = 200 * MiB
PEAK_RSS_LIMIT_MIB = 300


class CloudTransferSuite(LocalCloudTestCase):
    """The tests; a subclass names its ``provider``."""

    keys_and_bytes = COMMON_KEYS_AND_BYTES

    @classmethod
    def plugin_settings(cls) -> dict:
        return {**super().plugin_settings(), "max_objects_per_request": MAX_OBJECTS}

    def setUp(self):
        super().setUp()
        self.dataset_populator = DatasetPopulator(self.galaxy_interactor)
        self.admin = self.cloud.admin
        if not hasattr(type(self), "authz_id"):
            type(self).authz_id = self.create_authz(self.cloud.authz_config)
            limited = self.cloud.limited_authz_config
            type(self).limited_authz_id = self.create_authz(limited) if limited else self.authz_id
        self.history_id = self.dataset_populator.new_history()

    def create_authz(self, config: dict) -> str:
        record = self._post("cloud/authz", {"provider": self.provider, "config": config}, json=True)
        assert record.status_code == 200, record.text
        return record.json()["id"]

    # -- helpers -----------------------------------------------------------------------------------

    def cloud_get(self, objects, bucket=None, authz_id=None, **extra):
        payload = {
            "history_id": self.history_id,
            "authz_id": authz_id or self.authz_id,
            "bucket": bucket or self.cloud.bucket,
            "objects": objects,
            **extra,
        }
        return self._post("cloud/storage/get", payload, json=True)

    def cloud_send(self, bucket=None, authz_id=None, **extra):
        payload = {
            "history_id": self.history_id,
            "authz_id": authz_id or self.authz_id,
            "bucket": bucket or self.cloud.bucket,
            **extra,
        }
        return self._post("cloud/storage/send", payload, json=True)

    def put_object(self, key: str, body: bytes) -> None:
        self.admin.put_object(self.cloud.bucket, key, body)

    def read_object(self, key: str) -> bytes:
        return self.admin.get_object(self.cloud.bucket, key)

    @staticmethod
    def object_lines(job: dict, verb: str) -> dict:
        """The job's line for each object (transfer/job.py summary_line), by key."""
        lines = {}
        for line in (job.get("tool_stdout") or "").splitlines():
            if line.startswith(f"{verb} '"):
                key = line[len(verb) + 2 : line.index("': ")]
                lines[key] = line
        return lines

    @staticmethod
    def sha256_hashes(details: dict) -> list[str]:
        return [h["hash_value"] for h in details.get("hashes") or [] if h["hash_function"] == "SHA-256"]

    def watch_console_output(self, job_id: str, timeout: float = 600) -> list[str]:
        """The job's standard output as Galaxy shows it while the job runs (console_output), each
        time it changed; until the job ends. (Galaxy 26.1 answers 500 to console_output for a job
        that has no destination yet: asked only once the job runs.)"""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self._get(f"jobs/{job_id}").json()["state"]
            if state in ("ok", "error", "failed", "deleted"):
                return seen
            if state == "running":
                response = self._get(
                    f"jobs/{job_id}/console_output",
                    data={"stdout_position": 0, "stdout_length": 10**7, "stderr_position": 0, "stderr_length": 0},
                )
                assert response.status_code == 200, response.text
                shown = response.json()
                if shown["state"] == "running" and shown["stdout"] and (not seen or shown["stdout"] != seen[-1]):
                    seen.append(shown["stdout"])
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} did not end within {timeout} s")

    @staticmethod
    def peak_rss_mib(job: dict) -> float:
        """The transfer process's own report of its peak memory (transfer/job.py)."""
        for line in (job.get("tool_stdout") or job.get("stdout") or "").splitlines():
            if line.startswith("Peak memory of the transfer:"):
                return float(line.split(":")[1].split()[0])
        raise AssertionError(f"no peak memory line in the job's output: {job.get('tool_stdout')!r}")

    # -- get ---------------------------------------------------------------------------------------

    def test_get_copies_every_object_in_one_job(self):
        for key, body in self.keys_and_bytes.items():
            self.put_object(key, body)
        response = self.cloud_get(list(self.keys_and_bytes), input_args={"dbkey": "hg38"})
        assert response.status_code == 200, response.text
        summaries = response.json()
        assert [s["name"] for s in summaries] == list(self.keys_and_bytes)
        assert len({s["job_id"] for s in summaries}) == 1
        assert {
            "id",
            "state",
            "file_size",
            "create_time",
            "update_time",
            "deleted",
            "purged",
            "purgable",
            "total_size",
            "uuid",
        } <= set(summaries[0])
        job = self.wait_for_job(summaries[0]["job_id"])
        assert job["state"] == "ok", job
        assert job["tool_id"] == "cloud_storage_get"
        lines = self.object_lines(job, "Copied")
        for summary, (key, body) in zip(summaries, self.keys_and_bytes.items(), strict=True):
            details = self._get(f"datasets/{summary['id']}").json()
            assert details["state"] == "ok", details
            assert details["name"] == key
            assert details["genome_build"] == "hg38"
            assert self.dataset_bytes(summary["id"]) == body, key
            # Invariant 11: verified against the cloud's checksum, its SHA-256 kept as Galaxy's hash.
            digest = hashlib.sha256(body).hexdigest()
            assert self.sha256_hashes(details) == [digest], details["hashes"]
            assert f"SHA-256 {digest}, verified: " in lines[key], lines[key]
        first = self._get(f"datasets/{summaries[0]['id']}").json()
        assert first["extension"] == "bed"
        assert first["metadata_columns"] == 6

    def test_get_with_file_type(self):
        self.put_object("typed.txt", b"1\t2\n")
        summaries = self.cloud_get(["typed.txt"], input_args={"file_type": "tabular"}).json()
        self.wait_for_job(summaries[0]["job_id"])
        assert self._get(f"datasets/{summaries[0]['id']}").json()["extension"] == "tabular"

    def test_get_refuses_bad_requests_and_creates_nothing(self):
        self.put_object("present.txt", b"x")
        before_history, before_jobs = self.history_size(self.history_id), self.job_count()
        cases = [
            (self.cloud_get(["present.txt", "missing-1", "missing/2"]), 404, ["missing-1", "missing/2"]),
            (self.cloud_get(["present.txt"], bucket="galaxy-lab-data-missing"), 404, ["does not exist"]),
            (
                self.cloud_get(["present.txt"], bucket=self.cloud.other_bucket, authz_id=self.limited_authz_id),
                403,
                [self.cloud.other_bucket],
            ),
            (self.cloud_get([]), 400, ["objects"]),
            (self.cloud_get(["present.txt", "present.txt"]), 400, ["present.txt"]),
            (self.cloud_get(["present.txt"], input_args={"dbkey": "hg38", "colour": "red"}), 400, ["colour"]),
            (self.cloud_get("present.txt"), 400, ["objects"]),
        ]
        for response, status, words in cases:
            assert response.status_code == status, response.text
            for word in words:
                assert word in response.json()["err_msg"], response.json()
        assert self.history_size(self.history_id) == before_history
        assert self.job_count() == before_jobs

    def test_other_users_ids_reveal_nothing(self):
        self.put_object("mine.txt", b"mine")
        bucket = self.cloud.bucket
        with self._different_user("intruder@example.org"):
            their_history = self.dataset_populator.new_history()
            stolen_authz = self._post(
                "cloud/storage/get",
                {"history_id": their_history, "authz_id": self.authz_id, "bucket": bucket, "objects": ["mine.txt"]},
                json=True,
            )
            assert stolen_authz.status_code == 404, stolen_authz.text
            sent = self._post(
                "cloud/storage/send",
                {"history_id": their_history, "authz_id": self.authz_id, "bucket": bucket},
                json=True,
            )
            assert sent.status_code == 404, sent.text
            into_mine = self._post(
                "cloud/storage/send",
                {"history_id": self.history_id, "authz_id": self.authz_id, "bucket": bucket},
                json=True,
            )
            assert into_mine.status_code in (403, 404), into_mine.text
        assert self.history_size(self.history_id) == 0

    # -- send --------------------------------------------------------------------------------------

    def test_send_then_overwrite_rule(self):
        first = self.dataset_populator.new_dataset(
            self.history_id, content="a\tb\n1\t2\n", name="my table.tsv", wait=True
        )
        second = self.dataset_populator.new_dataset(
            self.history_id, content="second\n", name="n\u00f8tes.txt", wait=True
        )
        response = self.cloud_send()
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["bucket_name"] == self.cloud.bucket and body["failed_dataset_labels"] == []
        labels = [json.loads(label) for label in body["sent_dataset_labels"]]
        assert [label["object"] for label in labels] == ["my_table.tsv", "n\u00f8tes.txt"]
        assert len({label["job_id"] for label in labels}) == 1
        assert self.wait_for_job(labels[0]["job_id"])["state"] == "ok"
        assert self.read_object("my_table.tsv") == self.dataset_bytes(first["id"])
        assert self.read_object("n\u00f8tes.txt") == b"second\n"

        again = self.cloud_send(dataset_ids=[second["id"]]).json()
        renamed = json.loads(again["sent_dataset_labels"][0])["object"]
        assert renamed.startswith("n\u00f8tes.txt_") and len(renamed) == len("n\u00f8tes.txt_240521_135700")
        self.wait_for_job(json.loads(again["sent_dataset_labels"][0])["job_id"])
        assert self.read_object(renamed) == b"second\n"

        self.put_object("n\u00f8tes.txt", b"old bytes")
        replaced = self.cloud_send(dataset_ids=[second["id"]], overwrite_existing=True).json()
        assert json.loads(replaced["sent_dataset_labels"][0])["object"] == "n\u00f8tes.txt"
        self.wait_for_job(json.loads(replaced["sent_dataset_labels"][0])["job_id"])
        assert self.read_object("n\u00f8tes.txt") == b"second\n"

    def test_send_reports_what_cannot_be_sent(self):
        ok = self.dataset_populator.new_dataset(self.history_id, content="fine\n", name="fine.txt", wait=True)
        gone = self.dataset_populator.new_dataset(self.history_id, content="gone\n", name="gone.txt", wait=True)
        self._delete(f"histories/{self.history_id}/contents/{gone['id']}")
        body = self.cloud_send(dataset_ids=[ok["id"], gone["id"]]).json()
        assert [json.loads(label)["object"] for label in body["sent_dataset_labels"]] == ["fine.txt"]
        failed = [json.loads(label) for label in body["failed_dataset_labels"]]
        assert failed == [{"object": "gone.txt", "error": "the dataset is deleted"}]

        other_history = self.dataset_populator.new_history()
        stranger = self.dataset_populator.new_dataset(other_history, content="x\n", wait=True)
        refused = self.cloud_send(dataset_ids=[ok["id"], stranger["id"]])
        assert refused.status_code == 400 and stranger["id"] in refused.json()["err_msg"]
        denied = self.cloud_send(bucket=self.cloud.other_bucket, authz_id=self.limited_authz_id)
        assert denied.status_code == 403, denied.text
        missing = self.cloud_send(bucket="galaxy-lab-data-missing")
        assert missing.status_code == 404, missing.text

    def dataset_file(self, dataset_id: str) -> str:
        session = self._app.model.session
        session.expire_all()
        hda = session.get(HistoryDatasetAssociation, self._app.security.decode_id(dataset_id))
        return hda.dataset.get_file_name()

    # -- names -----------------------------------------------------------------------------------

    def test_hostile_names_reach_exactly_the_object_named_or_are_refused(self):
        """Invariant 10: a key with dot segments is the object of that name (S3, GCS) or a 400
        saying why (Azure, Swift: HTTP would resolve it to another object); names no cloud holds
        are 400s, never 502s."""
        rules = cloud(self.provider).names
        self.put_object("peaks/rep1.bed", b"the object next door\n")
        named = self.dataset_populator.new_dataset(
            self.history_id, content="sent under a dotted name\n", name="y/../sent.txt", wait=True
        )
        before_history, before_jobs = self.history_size(self.history_id), self.job_count()
        for bucket in (".", "..", "a\x00b"):
            response = self.cloud_get(["peaks/rep1.bed"], bucket=bucket)
            assert response.status_code == 400 and "bucket" in response.json()["err_msg"], response.text
        for key in ("nul\x00key", "line\nbreak"):
            response = self.cloud_get([key])
            assert response.status_code == 400 and "control character" in response.json()["err_msg"], response.text
        dotted = "x/../peaks/rep1.bed"
        if not rules.dot_segments_allowed:
            response = self.cloud_get([dotted])
            assert response.status_code == 400 and "'.' or '..' path segment" in response.json()["err_msg"], (
                response.text
            )
            assert self.history_size(self.history_id) == before_history and self.job_count() == before_jobs
            body = self.cloud_send(dataset_ids=[named["id"]]).json()
            assert body["sent_dataset_labels"] == []
            assert "'.' or '..' path segment" in json.loads(body["failed_dataset_labels"][0])["error"]
            assert "sent.txt" not in self.admin.list_keys(self.cloud.bucket)
            return
        self.put_object(dotted, b"the object of that very name\n")
        summaries = self.cloud_get([dotted]).json()
        assert self.wait_for_job(summaries[0]["job_id"])["state"] == "ok"
        assert self.dataset_bytes(summaries[0]["id"]) == b"the object of that very name\n"
        body = self.cloud_send(dataset_ids=[named["id"]]).json()
        label = json.loads(body["sent_dataset_labels"][0])
        assert label["object"] == "y/../sent.txt"
        assert self.wait_for_job(label["job_id"])["state"] == "ok"
        assert self.read_object("y/../sent.txt") == b"sent under a dotted name\n"
        assert "sent.txt" not in self.admin.list_keys(self.cloud.bucket)

    # -- both ways, large ------------------------------------------------------------------------

    def test_large_object_each_way_in_bounded_memory_verified_with_progress_shown_live(self):
        body = os.urandom(LARGE_SIZE)
        digest = hashlib.sha256(body).hexdigest()
        self.put_object("large/in.bin", body)
        del body
        self.put_object("large/small first.txt", b"a small object, which ends first\n")
        summaries = self.cloud_get(["large/small first.txt", "large/in.bin"], input_args={"file_type": "data"}).json()
        # Galaxy shows the running job's output (job_conf.yml.sample: live_tool_output_reporting):
        # it grows, with a line as each object ends and progress lines, before the job ends.
        shown = self.watch_console_output(summaries[1]["job_id"])
        job = self.wait_for_job(summaries[1]["job_id"], timeout=600)
        assert job["state"] == "ok", job
        assert len(shown) >= 2 and shown[-1].startswith(shown[0]), shown
        assert any("Progress: " in text and " of 2 objects" in text for text in shown), shown
        assert any("Copied 'large/small first.txt'" in text for text in shown), shown
        assert self.peak_rss_mib(job) <= PEAK_RSS_LIMIT_MIB, job["tool_stdout"]
        details = self._get(f"datasets/{summaries[1]['id']}").json()
        assert details["file_size"] == LARGE_SIZE
        assert hashlib.sha256(self.dataset_bytes(summaries[1]["id"])).hexdigest() == digest
        assert self.sha256_hashes(details) == [digest]
        assert f"SHA-256 {digest}, " in self.object_lines(job, "Copied")["large/in.bin"]

        self._put(f"histories/{self.history_id}/contents/{summaries[1]['id']}", {"name": "large out.bin"}, json=True)
        body = self.cloud_send(dataset_ids=[summaries[1]["id"]]).json()
        label = json.loads(body["sent_dataset_labels"][0])
        assert label["object"] == "large_out.bin"
        job = self.wait_for_job(label["job_id"], timeout=600)
        assert job["state"] == "ok", (job.get("tool_stdout"), job.get("tool_stderr"))
        assert self.peak_rss_mib(job) <= PEAK_RSS_LIMIT_MIB, job["tool_stdout"]
        assert hashlib.sha256(self.read_object("large_out.bin")).hexdigest() == digest
        # Checked against the dataset's Galaxy hash as it was read, and against what the cloud stored.
        sent = self.object_lines(job, "Sent")["large_out.bin"]
        assert f"SHA-256 {digest}, verified: " in sent, sent

        # A byte of the dataset's file changed on Galaxy's disk since: a send refuses it, naming it
        # and both values, and sends nothing (invariant 11).
        with open(self.dataset_file(summaries[1]["id"]), "r+b") as fh:
            fh.seek(LARGE_SIZE // 2)
            flipped = bytes([fh.read(1)[0] ^ 0x01])
            fh.seek(LARGE_SIZE // 2)
            fh.write(flipped)
        label = json.loads(self.cloud_send(dataset_ids=[summaries[1]["id"]]).json()["sent_dataset_labels"][0])
        job = self.wait_for_job(label["job_id"], timeout=600)
        assert job["state"] == "error", job
        stderr = job.get("tool_stderr") or ""
        assert f"The dataset sent to '{label['object']}' does not match its Galaxy SHA-256 hash" in stderr, stderr
        assert f"expected SHA-256 {digest}" in stderr and "nothing was sent" in stderr, stderr
        assert label["object"] not in self.admin.list_keys(self.cloud.bucket)
        # Multipart pieces (parts, blocks, segments) never show in the user's listing.
        assert self.admin.list_keys(self.cloud.bucket, "large") == [
            "large/in.bin",
            "large/small first.txt",
            "large_out.bin",
        ]

    # -- credentials -------------------------------------------------------------------------------

    def test_secret_never_in_job_parameters_or_command_line(self):
        self.put_object("secret-check.txt", b"x")
        summaries = self.cloud_get(["secret-check.txt"]).json()
        job = self.wait_for_job(summaries[0]["job_id"])
        as_admin = self._get(f"jobs/{summaries[0]['job_id']}", data={"full": True}, admin=True).json()
        record = self._get(f"cloud/authz/{self.authz_id}").json()
        for secret in self.cloud.secrets:
            for view in (job, as_admin, record):
                assert secret not in json.dumps(view)
            assert hashlib.sha256(secret.encode()).hexdigest() not in json.dumps(as_admin)


class WireFaultSuite:
    """Faults between Galaxy's jobs and the cloud's server, injected by the relay in front of it
    (base.relay_storage); a mixin of ``CloudTransferSuite``. Not for Swift behind Keystone, whose
    catalog names Swift's own address."""

    through_fault_proxy = True
    #: what the job's reads of the objects ``faults/<name>`` look like (not the request's checks:
    #: listings, HEADs, GCS's metadata GETs)
    object_reads = {
        "aws": r"/faults/{}$",
        "azure": r"/faults/{}(\?|$)",
        "gcp": r"faults%2F{}\?.*alt=media",
        "openstack": r"/faults/{}$",
    }

    def reads_of(self, name: str) -> str:
        return self.object_reads[self.provider].format(re.escape(name))

    def test_transient_faults_end_ok_with_the_same_bytes_and_a_permanent_one_fails_naming_the_object(self):
        """Through the relay in front of the cloud's server (base.relay_storage): 503s and a body
        broken mid-way are retried by the job, whose datasets end ok with the same bytes and hashes
        and whose lines count the retries; a 403 to the job's reads fails it at once, naming the
        object, with no ok dataset."""
        body = os.urandom(3 * MiB)
        self.put_object("faults/flaky.bin", body)
        self.fault_proxy.add(Status(503, method="GET", path=self.reads_of("flaky.bin"), every=2, times=2))
        self.fault_proxy.add(ResetMidBody(after_bytes=100_000, method="GET", path=self.reads_of("flaky.bin"), times=1))
        summaries = self.cloud_get(["faults/flaky.bin"], input_args={"file_type": "data"}).json()
        job = self.wait_for_job(summaries[0]["job_id"])
        assert job["state"] == "ok", (job.get("tool_stdout"), job.get("tool_stderr"))
        digest = hashlib.sha256(body).hexdigest()
        assert self.dataset_bytes(summaries[0]["id"]) == body
        assert self.sha256_hashes(self._get(f"datasets/{summaries[0]['id']}").json()) == [digest]
        line = self.object_lines(job, "Copied")["faults/flaky.bin"]
        retries = int(line.rsplit(", ", 1)[1].split()[0])
        assert f"SHA-256 {digest}, verified: " in line and retries >= 2, line

        self.fault_proxy.clear()
        self.fault_proxy.add(Status(503, method="PUT", every=2, times=2))
        self.fault_proxy.add(Status(503, method="POST", every=2, times=2))
        label = json.loads(self.cloud_send(dataset_ids=[summaries[0]["id"]]).json()["sent_dataset_labels"][0])
        job = self.wait_for_job(label["job_id"])
        assert job["state"] == "ok", (job.get("tool_stdout"), job.get("tool_stderr"))
        assert self.read_object(label["object"]) == body
        assert f"SHA-256 {digest}, verified: " in self.object_lines(job, "Sent")[label["object"]]

        self.fault_proxy.clear()
        self.put_object("faults/refused.bin", b"the job may not read this\n")
        refused = self.fault_proxy.add(Status(403, method="GET", path=self.reads_of("refused.bin")))
        summaries = self.cloud_get(["faults/refused.bin"], input_args={"file_type": "txt"}).json()
        job = self.wait_for_job(summaries[0]["job_id"])
        assert job["state"] == "error", job
        assert "'faults/refused.bin'" in job.get("tool_stderr", "") and "denied" in job["tool_stderr"], job
        assert refused.injected == 1  # never asked again
        assert self._get(f"datasets/{summaries[0]['id']}").json()["state"] == "error"


class TestAwsTransfers(WireFaultSuite, FolderSuite, CloudTransferSuite):
    provider = "aws"
    authz_lists_buckets = False
    keys_and_bytes = {**COMMON_KEYS_AND_BYTES, **PATH_ESCAPING_KEYS_AND_BYTES}


class TestAzureTransfers(WireFaultSuite, FolderSuite, CloudTransferSuite):
    provider = "azure"


class TestGcsTransfers(WireFaultSuite, FolderSuite, CloudTransferSuite):
    provider = "gcp"
    authz_lists_buckets = False  # the test's service account has roles on its bucket, none on the project
    keys_and_bytes = {**COMMON_KEYS_AND_BYTES, **PATH_ESCAPING_KEYS_AND_BYTES}


class TestSwiftTransfers(WireFaultSuite, FolderSuite, CloudTransferSuite):
    provider = "openstack"


class TestSwiftKeystoneTransfers(CloudTransferSuite):
    """Swift behind a real Keystone, with application credentials (galaxy_cloud_storage_testing/keystone_aio.py)."""

    provider = "openstack"
    cloud_options = {"keystone": True}

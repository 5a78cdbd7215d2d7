"""What an attacker or a careless client tries, in a real Galaxy with the plugin and moto: the
ticket for credentials while a job waits, and replayed after it, ids and bodies Galaxy cannot read,
an admin's request into another user's history, bucket names that would pick another host, and a
fuzzer over every route.

The plugin's transfer tools go to job destinations that pause (get) or fail (send) before the
tool runs, and Galaxy keeps every job directory (``cleanup_job: never``), so the tests can look at
a job's directory while it waits and after it ended.
"""

import json
import os
import stat
import tempfile
import time

import requests
import yaml
from api_fuzzing import fuzz
from base import LocalCloudTestCase
from galaxy_test.base.populators import DatasetPopulator

from galaxy_cloud_storage.jobs import credentials_files
from galaxy_cloud_storage_testing.connection_watch import HeldConnectionWatch

WAIT_BEFORE_TOOL = 6  # seconds a get job waits after Galaxy prepared it, before its tool runs
STOPPED_MARK = "stopped-before-the-tool"  # what a send job's script leaves in its directory as it fails
JOB_CONF = {
    "runners": {"local": {"load": "galaxy.jobs.runners.local:LocalJobRunner", "workers": 2}},
    "execution": {
        "default": "local",
        "environments": {
            "local": {"runner": "local"},
            # Galaxy runs these in the job script before the tool (job_conf's env "execute").
            "waits_before_its_tool": {"runner": "local", "env": [{"execute": f"sleep {WAIT_BEFORE_TOOL}"}]},
            "fails_before_its_tool": {
                "runner": "local",
                "env": [{"execute": f'touch "$_GALAXY_JOB_DIR/{STOPPED_MARK}"; exit 3'}],
            },
        },
    },
    "tools": [
        {"id": "cloud_storage_get", "environment": "waits_before_its_tool"},
        {"id": "cloud_storage_send", "environment": "fails_before_its_tool"},
    ],
}
FUZZ_EXAMPLES_PER_OPERATION = 40
FUZZ_SEED = 20261201


class TestHardening(LocalCloudTestCase):
    provider = "aws"

    @classmethod
    def handle_galaxy_config_kwds(cls, config):
        super().handle_galaxy_config_kwds(config)
        job_conf = os.path.join(tempfile.mkdtemp(prefix="gcs-job-conf-"), "job_conf.yml")
        with open(job_conf, "w") as fh:
            yaml.safe_dump(JOB_CONF, fh)
        config["job_config_file"] = job_conf
        config["cleanup_job"] = "never"

    def setUp(self):
        super().setUp()
        self.dataset_populator = DatasetPopulator(self.galaxy_interactor)
        if not hasattr(type(self), "authz_id"):
            type(self).authz_id = self.create_authz(self.cloud.authz_config)
        self.history_id = self.dataset_populator.new_history()

    def create_authz(self, config: dict, admin: bool = False) -> str:
        record = self._post("cloud/authz", {"provider": "aws", "config": config}, json=True, admin=admin)
        assert record.status_code == 200, record.text
        return record.json()["id"]

    def cloud_get(self, objects, history_id=None, **extra):
        payload = {
            "history_id": history_id or self.history_id,
            "authz_id": self.authz_id,
            "bucket": self.cloud.bucket,
            "objects": objects,
            **extra,
        }
        return self._post("cloud/storage/get", payload, json=True)

    def files_holding(self, directory: str, secret: str) -> list[str]:
        holding = []
        for parent, _, names in os.walk(directory):
            for name in names:
                path = os.path.join(parent, name)
                with open(path, "rb") as fh:
                    if secret.encode() in fh.read():
                        holding.append(os.path.relpath(path, directory))
        return holding

    def redeem(self, ticket: dict) -> requests.Response:
        """What anyone holding a copy of a job's ticket file could do with it (no API key needed)."""
        return requests.post(ticket["url"], json={"ticket": ticket["ticket"]}, timeout=60)

    def test_the_ticket_waits_readable_by_galaxy_alone_works_once_and_leaves_with_the_job(self):
        self.cloud.admin.put_object(self.cloud.bucket, "waiting.txt", b"waited\n")
        summaries = self.cloud_get(["waiting.txt"]).json()
        job_id = summaries[0]["job_id"]
        directory, found = self.wait_for_credentials(job_id)
        assert self._get(f"jobs/{job_id}").json()["state"] in ("queued", "running")  # the tool has not run
        for path in found:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        with open(found[0]) as fh:
            ticket = json.load(fh)
        assert set(ticket) == {"url", "ticket"} and f"/api/cloud/storage/jobs/{job_id}/credentials" in ticket["url"]
        # Nothing is minted while the job waits: no credential in its directory, only the ticket.
        assert self.files_holding(directory, self.cloud.secrets[0]) == []
        wrong = self.redeem({**ticket, "ticket": ticket["ticket"][:-2] + "xx"})
        self.assert_error(wrong, 403, "not valid")
        assert wrong.json()["err_code"] == 403002

        job = self.wait_for_job(job_id)
        assert job["state"] == "ok", job
        assert self.dataset_bytes(summaries[0]["id"]) == b"waited\n"
        assert credentials_files(directory) == []
        # The job redeemed it as it started: a copy taken while it waited is worth nothing now.
        self.assert_error(self.redeem(ticket), 403, "already used")

    def test_a_ticket_is_for_its_own_job_only(self):
        self.cloud.admin.put_object(self.cloud.bucket, "mine.txt", b"x")
        first = self.cloud_get(["mine.txt"]).json()[0]["job_id"]
        second = self.cloud_get(["mine.txt"]).json()[0]["job_id"]
        _, found = self.wait_for_credentials(first)
        with open(found[0]) as fh:
            ticket = json.load(fh)
        elsewhere = {**ticket, "url": ticket["url"].replace(f"/jobs/{first}/", f"/jobs/{second}/")}
        self.assert_error(self.redeem(elsewhere), 403, "not valid")
        assert self.wait_for_job(first)["state"] == "ok"  # its own ticket still worked
        assert self.wait_for_job(second)["state"] == "ok"

    def test_credentials_of_a_job_deleted_before_its_tool_ran_are_removed(self):
        self.cloud.admin.put_object(self.cloud.bucket, "never-copied.txt", b"x")
        job_id = self.cloud_get(["never-copied.txt"]).json()[0]["job_id"]
        directory, _ = self.wait_for_credentials(job_id)

        with open(credentials_files(directory)[0]) as fh:
            ticket = json.load(fh)

        deleted = self._delete(f"jobs/{job_id}")
        assert deleted.status_code == 200, deleted.text
        self.assert_error(self.redeem(ticket), 403, "ended")

        deadline = time.monotonic() + 30
        while credentials_files(directory) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert credentials_files(directory) == []
        assert self.files_holding(directory, self.cloud.secrets[0]) == []
        assert self.wait_for_job(job_id)["state"] == "deleted"

    def test_credentials_of_a_job_failed_before_its_tool_ran_are_removed(self):
        self.dataset_populator.new_dataset(self.history_id, content="never sent\n", name="never-sent.txt", wait=True)
        body = self._post(
            "cloud/storage/send",
            {"history_id": self.history_id, "authz_id": self.authz_id, "bucket": self.cloud.bucket},
            json=True,
        ).json()
        job_id = json.loads(body["sent_dataset_labels"][0])["job_id"]

        job = self.wait_for_job(job_id)

        assert job["state"] == "error", job
        # The job script ran (its files were written, the ticket among them) and stopped before the tool.
        directory = self.job_directory(job_id)
        assert os.path.exists(os.path.join(directory, STOPPED_MARK)), os.listdir(directory)
        assert not job.get("tool_stdout"), job
        assert credentials_files(directory) == []
        assert self.files_holding(directory, self.cloud.secrets[0]) == []
        assert "never-sent.txt" not in self.cloud.admin.list_keys(self.cloud.bucket)

    # -- the database under load --------------------------------------------------------------

    def test_no_database_connection_is_held_while_the_cloud_answers(self):
        """Each request's cloud calls (minting, the bucket and object checks) and the job's redeeming
        of its ticket are made with the request's connection back in Galaxy's pool: 50 concurrent
        gets on PostgreSQL got 30 answers "500 QueuePool limit of size 5 overflow 10 reached" while
        the requests held theirs."""
        self.cloud.admin.put_object(self.cloud.bucket, "pooled.txt", b"pooled\n")
        self.dataset_populator.new_dataset(self.history_id, content="pooled\n", name="pooled-send.txt", wait=True)
        with HeldConnectionWatch(self._app.model.engine) as watch:
            summary = self.cloud_get(["pooled.txt"]).json()[0]
            sent = self._post(
                "cloud/storage/send",
                {"history_id": self.history_id, "authz_id": self.authz_id, "bucket": self.cloud.bucket},
                json=True,
            )
            assert sent.status_code == 200, sent.text
            assert self.wait_for_job(summary["job_id"])["state"] == "ok"  # its ticket redeemed in the web process
        assert watch.plugin_connects >= 3, "the watch saw none of the requests' cloud calls"
        assert watch.violations == []

    # -- who may transfer where -------------------------------------------------------------------

    def test_an_admin_cannot_transfer_into_another_users_history(self):
        self.cloud.admin.put_object(self.cloud.bucket, "admins.txt", b"x")
        admin_authz = self.create_authz(self.cloud.authz_config, admin=True)
        before_history, before_jobs = self.history_size(self.history_id), self.job_count()
        get = {
            "history_id": self.history_id,
            "authz_id": admin_authz,
            "bucket": self.cloud.bucket,
            "objects": ["admins.txt"],
        }
        self.assert_error(self._post("cloud/storage/get", get, json=True, admin=True), 403, "another user")
        send = {"history_id": self.history_id, "authz_id": admin_authz, "bucket": self.cloud.bucket}
        self.assert_error(self._post("cloud/storage/send", send, json=True, admin=True), 403, "another user")
        assert self.history_size(self.history_id) == before_history
        assert self.job_count() == before_jobs

    # -- what Galaxy cannot read ------------------------------------------------------------------

    def test_ids_beyond_the_databases_range_are_404_on_every_route(self):
        for huge in (2**63, 2**64 + 7, 10**30):
            bad = self._app.security.encode_id(huge)
            for response in (
                self._get(f"cloud/authz/{bad}"),
                self._put(f"cloud/authz/{bad}", {"description": "x"}, json=True),
                self._delete(f"cloud/authz/{bad}"),
                self._post(
                    "cloud/authz", {"provider": "aws", "config": self.cloud.authz_config, "authn_id": bad}, json=True
                ),
                self.cloud_get(["x"], history_id=bad),
                self._post(
                    "cloud/storage/get",
                    {"history_id": self.history_id, "authz_id": bad, "bucket": self.cloud.bucket, "objects": ["x"]},
                    json=True,
                ),
                self._post(
                    "cloud/storage/send",
                    {"history_id": bad, "authz_id": self.authz_id, "bucket": self.cloud.bucket},
                    json=True,
                ),
                self._post(
                    "cloud/storage/send",
                    {
                        "history_id": self.history_id,
                        "authz_id": self.authz_id,
                        "bucket": self.cloud.bucket,
                        "dataset_ids": [bad],
                    },
                    json=True,
                ),
            ):
                self.assert_error(response, 404, "Nothing has the id")
        # a well-formed id that decodes to no number names nothing either
        self.assert_error(self._get("cloud/authz/0123456789abcdef"), 404)

    def test_bodies_that_cannot_be_read_keep_galaxys_error_shape(self):
        records_before = len(self._get("cloud/authz").json())
        url = self._api_url("cloud/authz", use_key=True)
        headers = {"content-type": "application/json"}
        cases = [
            ("[" * 1000 + "]" * 1000, "nested too deeply"),
            ('{"provider": "aws", "config": {"token_ttl": ' + "9" * 4301 + "}}", "cannot be read as JSON"),
            (b'{"provider": "aws\xff\xfe"}', "not valid UTF-8"),
            ("{not json", "JSON"),
        ]
        for body, words in cases:
            self.assert_error(requests.post(url, data=body, headers=headers), 400, words)
        get_url = self._api_url("cloud/storage/get", use_key=True)
        self.assert_error(requests.post(get_url, data=b"\xc3\x28", headers=headers), 400, "UTF-8")
        assert len(self._get("cloud/authz").json()) == records_before

    def test_undeclared_methods_are_405_naming_the_allowed_ones(self):
        for method, path, allowed in (
            ("PATCH", "cloud/authz", "GET, HEAD, POST"),
            ("TRACE", "cloud/storage/get", "POST"),
            ("PUT", "cloud/storage/send", "POST"),
            ("POST", f"cloud/authz/{self.authz_id}", "DELETE, GET, HEAD, PUT"),
        ):
            response = requests.request(method, self._api_url(path, use_key=True))
            self.assert_error(response, 405, method)
            assert response.headers["allow"] == allowed

    def test_timestamps_say_they_are_utc(self):
        record = self._get(f"cloud/authz/{self.authz_id}").json()
        self.cloud.admin.put_object(self.cloud.bucket, "stamped.txt", b"x")
        summary = self.cloud_get(["stamped.txt"]).json()[0]
        for stamp in (
            record["create_time"],
            record["last_update"],
            record["last_activity"],
            summary["create_time"],
            summary["update_time"],
        ):
            assert stamp.endswith("Z") or stamp.endswith("+00:00"), stamp
        self.wait_for_job(summary["job_id"])

    # -- names that would pick another host ----------------------------------------------------

    def test_bucket_names_are_checked_before_any_call(self):
        # A key S3 does not know: every call with it would be refused (403), so a 400 naming the
        # rule shows that no call was made.
        wrong_key = {"access_key_id": "AKIAWRONGKEY0001", "secret_access_key": "not-the-secret"}
        wrong = self.create_authz(wrong_key)
        for bucket, rule in (
            ("arn:aws:s3:us-east-1:123456789012:accesspoint/reports", "bucket"),  # the schema's: no '/'
            ("arn:aws:s3:us-west-2:123456789012:accesspoint:reports", "ARN"),
            ("arn:aws:s3-object-lambda:us-east-1:123456789012:accesspoint:x", "ARN"),
            ("reports-abc123def-s3alias", "-s3alias"),
            (".", "3 to 63"),
            ("a?b", "may hold only"),
            ("a%b#c", "may hold only"),
            ("Upper-Case", "may hold only"),
            ("r\u00e9sum\u00e9", "may hold only"),
            ("192.168.0.1", "IP address"),
        ):
            for path, payload in (
                ("cloud/storage/get", {"objects": ["x"]}),
                ("cloud/storage/send", {}),
            ):
                body = {"history_id": self.history_id, "authz_id": wrong, "bucket": bucket, **payload}
                self.assert_error(self._post(path, body, json=True), 400, "bucket", rule)
        self.assert_error(self.cloud_get(["a\x00b", "fine.txt"]), 400, "control character")
        denied = {"history_id": self.history_id, "authz_id": wrong, "bucket": self.cloud.bucket, "objects": ["x"]}
        self.assert_error(self._post("cloud/storage/get", denied, json=True), 403)
        assert self.history_size(self.history_id) == 0

    # -- a fuzzer over every route ----------------------------------------------------------------

    def test_fuzzing_finds_no_server_error_and_no_response_off_the_document(self):
        with self._different_user("fuzzer@example.org"):
            key = self.galaxy_interactor.api_key
            history_id = self.dataset_populator.new_history()
            authz_id = self.create_authz(self.cloud.authz_config)
        self.cloud.admin.put_object(self.cloud.bucket, "fuzzed.txt", b"fuzz\n")
        examples = {
            "history_id": history_id,
            "authz_id": authz_id,
            "bucket": self.cloud.bucket,
            "objects": ["fuzzed.txt"],
        }
        workdir = tempfile.mkdtemp(prefix="gcs-fuzz-")

        report = fuzz(self.url, key, examples, workdir, FUZZ_EXAMPLES_PER_OPERATION, FUZZ_SEED)

        print(f"schemathesis: {report.cases} test cases, {report.failures} failures")
        assert report.exit_code == 0 and report.failures == 0, (
            f"see {workdir}/schemathesis-output.txt:\n{report.output[-3000:]}"
        )
        assert report.cases >= 100, report.output[-5000:]

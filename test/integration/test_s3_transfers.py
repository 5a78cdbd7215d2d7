"""get and send against moto (IAM enforcement on), in a real Galaxy, the seed's walkthrough.

This class authorizes with an admin-enabled static key (vault mode), so it needs no OpenID
provider; the OIDC path has its own tests.
"""

import hashlib
import json

from s3_base import (
    BUCKET,
    OTHER_BUCKET,
    S3TestCase,
)

KEYS_AND_BYTES = {
    "peaks/rep1.bed": b"chr1\t100\t200\tpeak1\t0\t+\nchr1\t300\t400\tpeak2\t0\t-\n",
    "with space.txt": b"hello world\n",
    "unicod\u00e9/r\u00e9sum\u00e9.tsv": "a\tb\n\u00e9\t1\n".encode(),
    "../escape.txt": b"must stay inside the job directory\n",
    "/leading-slash.txt": b"leading slash\n",
    "empty.dat": b"",
}


class TestS3StaticKey(S3TestCase):
    plugin_config = {"providers": {}}
    aws_settings = {"allow_stored_secrets": True}

    def setUp(self):
        super().setUp()
        if not hasattr(type(self), "authz_id"):
            key_id, secret = self.aws.create_bucket_user("galaxy-user", BUCKET)
            type(self).secret = secret
            record = self._post("cloud/authz", {"provider": "aws", "config": {"access_key_id": key_id, "secret_access_key": secret}}, json=True)
            assert record.status_code == 200, record.text
            type(self).authz_id = record.json()["id"]
        self.history_id = self.dataset_populator.new_history()

    def cloud_get(self, objects, bucket=BUCKET, **extra):
        payload = {"history_id": self.history_id, "authz_id": self.authz_id, "bucket": bucket, "objects": objects, **extra}
        return self._post("cloud/storage/get", payload, json=True)

    def cloud_send(self, **extra):
        payload = {"history_id": self.history_id, "authz_id": self.authz_id, "bucket": BUCKET, **extra}
        return self._post("cloud/storage/send", payload, json=True)

    # -- get ---------------------------------------------------------------------------------------

    def test_get_copies_every_object_in_one_job(self):
        for key, body in KEYS_AND_BYTES.items():
            self.put_object(key, body)
        response = self.cloud_get(list(KEYS_AND_BYTES), input_args={"dbkey": "hg38"})
        assert response.status_code == 200, response.text
        summaries = response.json()
        assert [s["name"] for s in summaries] == list(KEYS_AND_BYTES)
        assert len({s["job_id"] for s in summaries}) == 1
        assert {"id", "state", "file_size", "create_time", "update_time", "deleted", "purged", "purgable", "total_size", "uuid"} <= set(summaries[0])
        job = self.wait_for_job(summaries[0]["job_id"])
        assert job["state"] == "ok", job
        assert job["tool_id"] == "cloud_storage_get"
        for summary, (key, body) in zip(summaries, KEYS_AND_BYTES.items()):
            details = self._get(f"datasets/{summary['id']}").json()
            assert details["state"] == "ok", details
            assert details["name"] == key
            assert details["genome_build"] == "hg38"
            assert self.dataset_bytes(summary["id"]) == body, key
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
            (self.cloud_get(["present.txt", "missing-1", "missing-2"]), 404, ["missing-1", "missing-2"]),
            (self.cloud_get(["present.txt"], bucket="galaxy-lab-data-missing"), 404, ["does not exist"]),
            (self.cloud_get(["present.txt"], bucket=OTHER_BUCKET), 403, [OTHER_BUCKET]),
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
        with self._different_user("intruder@example.org"):
            their_history = self.dataset_populator.new_history()
            # my authorization in their history, and their authorization... of mine
            stolen_authz = self._post("cloud/storage/get", {"history_id": their_history, "authz_id": self.authz_id, "bucket": BUCKET, "objects": ["mine.txt"]}, json=True)
            assert stolen_authz.status_code == 404, stolen_authz.text
            sent = self._post("cloud/storage/send", {"history_id": their_history, "authz_id": self.authz_id, "bucket": BUCKET}, json=True)
            assert sent.status_code == 404, sent.text
        with self._different_user("intruder@example.org"):
            into_mine = self._post("cloud/storage/send", {"history_id": self.history_id, "authz_id": self.authz_id, "bucket": BUCKET}, json=True)
            assert into_mine.status_code in (403, 404), into_mine.text
        assert self.history_size(self.history_id) == 0

    # -- send --------------------------------------------------------------------------------------

    def test_send_then_overwrite_rule(self):
        first = self.dataset_populator.new_dataset(self.history_id, content="a\tb\n1\t2\n", name="my table.tsv", wait=True)
        second = self.dataset_populator.new_dataset(self.history_id, content="second\n", name="notes.txt", wait=True)
        response = self.cloud_send()
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["bucket_name"] == BUCKET and body["failed_dataset_labels"] == []
        labels = [json.loads(label) for label in body["sent_dataset_labels"]]
        assert [label["object"] for label in labels] == ["my_table.tsv", "notes.txt"]
        assert len({label["job_id"] for label in labels}) == 1
        assert self.wait_for_job(labels[0]["job_id"])["state"] == "ok"
        assert self.read_object("my_table.tsv") == self.dataset_bytes(first["id"])
        assert self.read_object("notes.txt") == b"second\n"

        again = self.cloud_send(dataset_ids=[second["id"]]).json()
        renamed = json.loads(again["sent_dataset_labels"][0])["object"]
        assert renamed.startswith("notes.txt_") and len(renamed) == len("notes.txt_240521_135700")
        self.wait_for_job(json.loads(again["sent_dataset_labels"][0])["job_id"])
        assert self.read_object(renamed) == b"second\n"

        self.put_object("notes.txt", b"old bytes")
        replaced = self.cloud_send(dataset_ids=[second["id"]], overwrite_existing=True).json()
        assert json.loads(replaced["sent_dataset_labels"][0])["object"] == "notes.txt"
        self.wait_for_job(json.loads(replaced["sent_dataset_labels"][0])["job_id"])
        assert self.read_object("notes.txt") == b"second\n"

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
        denied = self.cloud_send(bucket=OTHER_BUCKET)
        assert denied.status_code == 403, denied.text

    def test_secret_never_in_job_parameters_or_command_line(self):
        self.put_object("secret-check.txt", b"x")
        summaries = self.cloud_get(["secret-check.txt"]).json()
        job = self.wait_for_job(summaries[0]["job_id"])
        as_admin = self._get(f"jobs/{summaries[0]['job_id']}", data={"full": True}, admin=True).json()
        for view in (job, as_admin):
            assert self.secret not in json.dumps(view)
        assert hashlib.sha256(self.secret.encode()).hexdigest() not in json.dumps(as_admin)

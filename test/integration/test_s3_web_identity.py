"""get and send with a secretless ``aws`` authorization, the way the issue describes it.

The users log in to Galaxy through Galaxy's real OIDC login (its generic ``oidc`` backend, the
authorization code flow, Galaxy's callback) with a real OpenID provider on 127.0.0.1
(``node/op.mjs``). The plugin reads the id_token Galaxy stored, refreshes it through Galaxy when it
has expired, and exchanges it for temporary keys with STS AssumeRoleWithWebIdentity: moto, IAM
enforcement on, the token checked as AWS checks it (issuer registered as an IAM OIDC provider,
audience, signature against the provider's keys, expiry, the role's trust policy), the role
allowed to use one bucket only. One Galaxy for the whole class.
"""

import json
import os
import sqlite3
import time
from datetime import datetime, timezone
from typing import Optional

import jwt
from base import write_gated_job_conf
from galaxy_test.base.populators import DatasetPopulator
from oidc_base import FederatedCloudTestCase, OIDC_TOKENS, OidcLoginTestCase, OidcUser, sha256

from galaxy_cloud_storage_testing import moto_aws, oidc_provider
from galaxy_cloud_storage_testing.local_clouds import BUCKET, OTHER_BUCKET

TOKEN_TTL = 1800  # the authorization's token_ttl, which is STS's DurationSeconds


class TestS3WebIdentity(OidcLoginTestCase, FederatedCloudTestCase):
    provider = "aws"  # secretless modes only: no stored secrets

    # -- one Galaxy, one provider (oidc_base), moto (local_clouds: a role trusting the provider), two users

    @classmethod
    def handle_galaxy_config_kwds(cls, config):
        super().handle_galaxy_config_kwds(config)
        config["job_config_file"], cls.gate = write_gated_job_conf(cls.oidc_dir)

    @classmethod
    def set_up_logins(cls):
        cls.role_arn = cls.cloud.authz_config["role_arn"]
        cls.aws, cls.moto_url = cls.cloud.admin, cls.cloud.settings["s3_endpoint_url"]
        cls.web_identity_log = os.path.join(cls.cloud_dir, "web_identity.jsonl")  # moto_aws.web_identity_calls
        super().set_up_logins()
        cls.authz_id = cls.create_authz(cls.alice)

    @classmethod
    def create_authz(cls, user: OidcUser, authn_id: Optional[str] = None) -> str:
        response = cls.api_as(user, "post", "cloud/authz", json={
            "provider": "aws",
            "authn_id": authn_id or user.authn_id,
            "config": {"role_arn": cls.role_arn, "token_ttl": TOKEN_TTL},
            "description": f"{user.login}'s lab bucket",
        })  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()["id"]

    def setUp(self):
        super().setUp()
        self.dataset_populator = DatasetPopulator(self.galaxy_interactor)
        self.history_id = self.dataset_populator.new_history()

    # -- helpers -----------------------------------------------------------------------------------

    def put_object(self, key: str, body: bytes, bucket: str = BUCKET) -> None:
        self.aws.put_object(bucket, key, body)

    def read_object(self, key: str, bucket: str = BUCKET) -> bytes:
        return self.aws.get_object(bucket, key)

    def object_keys(self, bucket: str = BUCKET) -> list[str]:
        return self.aws.list_keys(bucket)

    def cloud_get(self, objects, bucket=BUCKET, history_id=None, authz_id=None):
        payload = {
            "history_id": history_id or self.history_id,
            "authz_id": authz_id or self.authz_id,
            "bucket": bucket,
            "objects": objects,
        }
        return self._post("cloud/storage/get", payload, json=True)

    def cloud_send(self, bucket=BUCKET, history_id=None, authz_id=None, **extra):
        payload = {
            "history_id": history_id or self.history_id,
            "authz_id": authz_id or self.authz_id,
            "bucket": bucket,
            **extra,
        }
        return self._post("cloud/storage/send", payload, json=True)

    def sts_calls(self) -> list[dict]:
        """moto's record of every AssumeRoleWithWebIdentity call so far."""
        return moto_aws.web_identity_calls(self.web_identity_log)

    def transfer_one(self, key: str, body: bytes) -> dict:
        """A get of ``key`` that must succeed; returns the finished job."""
        self.put_object(key, body)
        response = self.cloud_get([key])
        assert response.status_code == 200, response.text
        job = self.wait_for_job(response.json()[0]["job_id"])
        assert job["state"] == "ok", job
        assert self.dataset_bytes(response.json()[0]["id"]) == body
        return job

    # -- the login -------------------------------------------------------------------------------

    def test_login_goes_through_galaxy_and_stores_a_verifiable_id_token(self):
        identities = self.alice.session.get(f"{self.galaxy_url}/authnz/", timeout=30).json()
        assert [(i["id"], i["provider"], i["email"]) for i in identities] == [
            (self.alice.authn_id, "oidc", "alice@example.org")
        ]
        stored = self.stored_tokens(self.alice)
        assert {"id_token", "refresh_token", "expires_in", "auth_time"} <= set(stored)  # GET_ALL_EXTRA_DATA
        # Signed by the provider for this Galaxy: what STS checks too.
        key = jwt.PyJWKClient(f"{self.issuer}/jwks").get_signing_key_from_jwt(stored["id_token"])
        claims = jwt.decode(
            stored["id_token"], key.key, algorithms=["RS256"], audience=oidc_provider.CLIENT_ID, issuer=self.issuer
        )
        assert claims["sub"] == "alice"
        authz = self._get(f"cloud/authz/{self.authz_id}").json()
        assert authz["authn_id"] == self.alice.authn_id
        assert authz["config"] == {"role_arn": self.role_arn, "token_ttl": TOKEN_TTL}

    # -- get and send ------------------------------------------------------------------------------

    def test_get_and_send_with_temporary_keys_minted_at_request_and_at_job_run(self):
        body = b"@read1\nACGT\n+\nIIII\n"
        self.put_object("reads/sample1.fastq", body)
        before = len(self.sts_calls())
        response = self.cloud_get(["reads/sample1.fastq"])
        assert response.status_code == 200, response.text
        summary = response.json()[0]
        job = self.wait_for_job(summary["job_id"])
        assert job["state"] == "ok", job
        assert self.dataset_bytes(summary["id"]) == body
        get_calls = self.sts_calls()[before:]

        dataset = self.dataset_populator.new_dataset(
            self.history_id, content="sent by alice\n", name="alice results.txt", wait=True
        )
        response = self.cloud_send(dataset_ids=[dataset["id"]])
        assert response.status_code == 200, response.text
        label = json.loads(response.json()["sent_dataset_labels"][0])
        assert label["object"] == "alice_results.txt"
        assert self.wait_for_job(label["job_id"])["state"] == "ok"
        assert self.read_object("alice_results.txt") == b"sent by alice\n"
        calls = self.sts_calls()[before:]

        # Each request: one exchange to check the bucket and objects before the job is created, one
        # when the job runs; none in between.
        assert len(get_calls) == 2 and len(calls) == 4, calls
        created = datetime.fromisoformat(job["create_time"]).replace(tzinfo=timezone.utc).timestamp()
        assert get_calls[0]["time"] < created < get_calls[1]["time"], (get_calls, job["create_time"])
        id_token = self.stored_tokens(self.alice)["id_token"]
        for call in calls:
            assert call["outcome"] == "ok", call
            assert call["role_arn"] == self.role_arn
            assert call["role_session_name"] == f"galaxy-{self.alice.username}"
            assert call["duration_seconds"] == TOKEN_TTL
            assert (call["iss"], call["aud"], call["sub"]) == (self.issuer, oidc_provider.CLIENT_ID, "alice")
            assert call["token_sha256"] == sha256(id_token)  # the token Galaxy stored
        sessions = {c["access_key_id"]: c for c in moto_aws.issued_credentials(self.moto_url)}
        assert all(sessions[call["access_key_id"]]["session_name"] == f"galaxy-{self.alice.username}" for call in calls)

    def test_another_bucket_is_refused_and_nothing_is_created(self):
        self.aws.client("s3").put_object(Bucket=OTHER_BUCKET, Key="theirs.txt", Body=b"not alice's")
        dataset = self.dataset_populator.new_dataset(self.history_id, content="x\n", name="x.txt", wait=True)
        before_history, before_jobs = self.history_size(self.history_id), self.job_count()
        before_objects = self.object_keys(OTHER_BUCKET)

        got = self.cloud_get(["theirs.txt"], bucket=OTHER_BUCKET)
        assert got.status_code == 403, got.text
        sent = self.cloud_send(bucket=OTHER_BUCKET, dataset_ids=[dataset["id"]])
        assert sent.status_code == 403, sent.text
        for response in (got, sent):
            message = response.json()["err_msg"]
            assert OTHER_BUCKET in message and "denied" in message, message
        assert self.history_size(self.history_id) == before_history
        assert self.job_count() == before_jobs
        assert self.object_keys(OTHER_BUCKET) == before_objects

    # -- the id_token's refresh ------------------------------------------------------------------

    def test_expired_id_token_is_refreshed_through_galaxy(self):
        self.transfer_one("before-expiry.txt", b"fresh token\n")
        old = self.make_id_token_look_expired(self.alice)
        before = len(self.sts_calls())
        time.sleep(1.1)  # a new token issued in the same second as the old one would be identical

        self.transfer_one("after-expiry.txt", b"refreshed token\n")

        new = self.stored_tokens(self.alice)
        assert new["id_token"] != old["id_token"]
        assert new["auth_time"] > old["auth_time"]
        calls = self.sts_calls()[before:]
        assert len(calls) == 2, calls
        # STS saw the refreshed token, both at the request and when the job ran
        assert {call["token_sha256"] for call in calls} == {sha256(new["id_token"])}
        assert all(call["outcome"] == "ok" for call in calls)

    def test_a_job_that_waited_past_the_id_tokens_expiry_gets_keys_of_the_refreshed_login(self):
        """Keys are minted as the job starts (tickets.py), in Galaxy's web process, which
        refreshes the login there: not in the job handler, whose refresh of Galaxy's own fails."""
        self.put_object("waited.txt", b"waited in a queue\n")
        open(self.gate, "w").close()
        try:
            response = self.cloud_get(["waited.txt"])
            assert response.status_code == 200, response.text
            summary = response.json()[0]
            self.wait_for_credentials(summary["job_id"])  # prepared, waiting before its tool
            old = self.make_id_token_look_expired(self.alice)
            before = len(self.sts_calls())
            time.sleep(1.1)  # a new token issued in the same second as the old one would be identical
        finally:
            os.unlink(self.gate)

        job = self.wait_for_job(summary["job_id"])
        assert job["state"] == "ok", job
        assert self.dataset_bytes(summary["id"]) == b"waited in a queue\n"
        new = self.stored_tokens(self.alice)
        assert new["id_token"] != old["id_token"]
        calls = self.sts_calls()[before:]
        assert len(calls) == 1, calls  # the job's own, as it started, with the refreshed token
        assert calls[0]["token_sha256"] == sha256(new["id_token"]) and calls[0]["outcome"] == "ok"

    def test_a_job_that_starts_while_the_database_is_locked_asks_again_and_gets_its_keys(self):
        """tickets.DatabaseBusy: the job's redemption meets SQLite locked by another writer (a
        1,000-dataset job's handler holds the lock that long), is answered 503 with the ticket
        unused, and asks again once the database is free. Before, the job failed with a 500."""
        self.put_object("locked.txt", b"waited for the database\n")
        open(self.gate, "w").close()
        try:
            summary = self.cloud_get(["locked.txt"]).json()[0]
            self.wait_for_credentials(summary["job_id"])  # prepared, waiting before its tool
            self.wait_for_state(summary["job_id"], "running")  # Galaxy's own writes are done
            lock = sqlite3.connect(self.database_path(), timeout=30, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")  # readers go on, writers wait: SQLite's busy timeout is 5 s
        finally:
            os.unlink(self.gate)
        try:
            time.sleep(12)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        job = self.wait_for_job(summary["job_id"])
        assert job["state"] == "ok", job
        assert self.dataset_bytes(summary["id"]) == b"waited for the database\n"
        assert "Galaxy's database was busy" in job["tool_stdout"], job["tool_stdout"]

    def test_failed_refresh_asks_to_log_in_again_and_creates_nothing(self):
        self.put_object("needs-login.txt", b"x")
        dataset = self.dataset_populator.new_dataset(self.history_id, content="y\n", name="y.txt", wait=True)
        before_history, before_jobs, before_calls = (
            self.history_size(self.history_id),
            self.job_count(),
            len(self.sts_calls()),
        )
        before_objects = self.object_keys()
        try:
            # The user (or the provider's admin) ended the grant; then the id_token expires.
            tokens = self.stored_tokens(self.alice)
            oidc_provider.revoke(self.issuer, tokens["refresh_token"])
            self.make_id_token_look_expired(self.alice)

            got = self.cloud_get(["needs-login.txt"])
            sent = self.cloud_send(dataset_ids=[dataset["id"]])
            for response in (got, sent):
                assert response.status_code == 401, response.text
                message = response.json()["err_msg"]
                assert "log in to galaxy again" in message.lower(), message
                assert oidc_provider.LABEL in message or "'oidc'" in message, message
            assert self.history_size(self.history_id) == before_history
            assert self.job_count() == before_jobs
            assert len(self.sts_calls()) == before_calls
            assert self.object_keys() == before_objects
        finally:
            # Logging in again renews the same identity: the authorization works again.
            again = self.oidc_login("alice")
            assert again.authn_id == self.alice.authn_id
        self.transfer_one("after-login.txt", b"logged in again\n")

    # -- invariant 2 -------------------------------------------------------------------------------

    def test_no_credential_is_stored_or_logged(self):
        self.transfer_one("inv2/get.txt", b"get\n")
        self.make_id_token_look_expired(self.alice)  # a refresh too, and its tokens
        time.sleep(1.1)
        self.transfer_one("inv2/get-after-refresh.txt", b"get after refresh\n")
        dataset = self.dataset_populator.new_dataset(self.history_id, content="send\n", name="inv2-send.txt", wait=True)
        sent = self.cloud_send(dataset_ids=[dataset["id"]])
        assert sent.status_code == 200, sent.text
        send_job = json.loads(sent.json()["sent_dataset_labels"][0])["job_id"]
        assert self.wait_for_job(send_job)["state"] == "ok"

        secrets = self.credential_material()
        assert (
            len([name for name in secrets if name.startswith("moto ")]) >= 3 * 6
        )  # 3 jobs, 2 exchanges each, 3 values

        self.assert_no_credential_anywhere(secrets, {"POST /api/cloud/storage/send": sent.text})

    def credential_material(self) -> dict:
        """Every temporary key moto issued in this class, and the OIDC tokens of the login as Galaxy
        holds them now: name -> value."""
        secrets = {}
        for i, issued in enumerate(moto_aws.issued_credentials(self.moto_url)):
            for field in ("access_key_id", "secret_access_key", "session_token"):
                secrets[f"moto {field} #{i} ({issued['session_name']})"] = issued[field]
        stored = self.stored_tokens(self.alice)
        for name in OIDC_TOKENS:
            secrets[f"OIDC {name}"] = stored[name]
        assert all(len(value) >= 16 for value in secrets.values()), secrets.keys()
        return secrets

    # -- isolation (invariant 5) ---------------------------------------------------------------------

    def test_second_user_with_the_first_users_ids_gets_nothing(self):
        bob = self.oidc_login("bob")
        bob_authz = self.create_authz(bob)  # bob's own identity, the same role
        self.put_object("alice-only.txt", b"alice's\n")
        dataset = self.dataset_populator.new_dataset(
            self.history_id, content="alice's dataset\n", name="alice-only-send.txt", wait=True
        )
        bob_history = self.api_as(bob, "post", "histories", json={"name": "bob's"}).json()["id"]
        before_alice, before_calls, before_objects = (
            self.history_size(self.history_id),
            len(self.sts_calls()),
            self.object_keys(),
        )

        def as_bob(path, payload):
            return self.api_as(bob, "post", path, json=payload)

        get = {"bucket": BUCKET, "objects": ["alice-only.txt"]}
        send = {"bucket": BUCKET, "dataset_ids": [dataset["id"]]}
        refused = {
            "alice's authz, bob's history (get)": as_bob(
                "cloud/storage/get", {**get, "authz_id": self.authz_id, "history_id": bob_history}
            ),
            "alice's authz, bob's history (send)": as_bob(
                "cloud/storage/send", {"bucket": BUCKET, "authz_id": self.authz_id, "history_id": bob_history}
            ),
            "bob's authz, alice's history (get)": as_bob(
                "cloud/storage/get", {**get, "authz_id": bob_authz, "history_id": self.history_id}
            ),
            "bob's authz, alice's history (send)": as_bob(
                "cloud/storage/send", {**send, "authz_id": bob_authz, "history_id": self.history_id}
            ),
            "alice's authz, alice's history (get)": as_bob(
                "cloud/storage/get", {**get, "authz_id": self.authz_id, "history_id": self.history_id}
            ),
            "alice's authz, alice's history (send)": as_bob(
                "cloud/storage/send", {**send, "authz_id": self.authz_id, "history_id": self.history_id}
            ),
            "alice's authz (show)": self.api_as(bob, "get", f"cloud/authz/{self.authz_id}"),
            "alice's identity in bob's authz": as_bob(
                "cloud/authz",
                {"provider": "aws", "authn_id": self.alice.authn_id, "config": {"role_arn": self.role_arn}},
            ),
        }
        for case, response in refused.items():
            assert response.status_code in (400, 403, 404), f"{case}: {response.status_code} {response.text}"
            assert "alice" not in response.text, f"{case}: {response.text}"
        assert self.history_size(self.history_id) == before_alice
        assert self.api_as(bob, "get", f"histories/{bob_history}/contents").json() == []
        assert self.api_as(bob, "get", "jobs").json() == []
        assert len(self.sts_calls()) == before_calls  # no credentials were minted for any of it
        assert self.object_keys() == before_objects
        # bob's own authorization works for bob
        response = as_bob("cloud/storage/get", {**get, "authz_id": bob_authz, "history_id": bob_history})
        assert response.status_code == 200, response.text
        job_id = response.json()[0]["job_id"]
        deadline = time.monotonic() + 180
        while self.api_as(bob, "get", f"jobs/{job_id}").json()["state"] not in ("ok", "error", "failed"):
            assert time.monotonic() < deadline, "bob's job did not finish"
            time.sleep(0.5)
        assert self.api_as(bob, "get", f"jobs/{job_id}").json()["state"] == "ok"
        calls = self.sts_calls()[before_calls:]
        assert calls and {(c["sub"], c["role_session_name"]) for c in calls} == {("bob", f"galaxy-{bob.username}")}

"""get and send with secretless ``azure``, ``gcp`` and ``openstack`` authorizations: the user's
OIDC login, exchanged at the cloud's token endpoint, as test_s3_web_identity.py does it for AWS.

One suite (``FederatedTransferSuite``), one class per cloud, one Galaxy each. alice logs in through
Galaxy's real OIDC login with a real OpenID provider on 127.0.0.1 (oidc_base.py); the cloud is
started to trust her logins at that provider (local_clouds.start_cloud with an ``OidcIdentity``):

- Azure: Azurite over HTTPS with ``--oauth basic``, and a Microsoft identity platform token
  endpoint (entra_token_server.py) where an app holds a federated identity credential for alice's
  subject, issuer and audience. The plugin's id_token is the app's client assertion; Azurite accepts
  only the bearer tokens that endpoint signs.
- GCP: fake-gcs-server behind gcs_auth_proxy.py (which admits only tokens the local Google STS
  issued, on the buckets granted to their principal), and google_sts_server.py with a workload
  identity pool provider trusting the issuer and audience; alice's principal may use one bucket.
- OpenStack: Swift behind a real Keystone (keystone_aio.py) with an identity provider for the
  issuer, protocol ``openid`` and a mapping that admits alice's logins through Galaxy's client to a
  project. Keystone federation takes the OIDC *access* token (not the id_token): a middleware in
  front of Keystone introspects it at the provider, as Apache's mod_auth_openidc does.

Each token server (Keystone's middleware) writes one JSON line per exchange (never a token): that
record is what the tests count and compare with the token Galaxy stored.
"""

import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import jwt
import requests
from base import write_gated_job_conf
from galaxy_test.base.populators import DatasetPopulator
from oidc_base import FederatedCloudTestCase, OIDC_TOKENS, OidcLoginTestCase, sha256, SUBJECT

from galaxy_cloud_storage_testing import entra_token_server, keystone_aio, oidc_provider
from galaxy_cloud_storage_testing.local_clouds import GCP_AUDIENCE, GCP_POOL

JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")
KEYSTONE_TOKEN = re.compile(r"gAAAAA[\w=-]{80,}")  # fernet
AZURE_ISSUER_PREFIX = "https://sts.windows.net/"
GCS_TOKEN_PREFIX = "ya29.local-"


@dataclass(frozen=True)
class Exchange:
    """One request at the cloud's token endpoint, from its own record."""

    time: float
    ok: bool
    iss: str
    sub: str
    aud: tuple[str, ...]
    token_sha256: str  # of the client assertion (Azure) or subject token (GCP)
    record: dict


class FederatedTransferSuite(OidcLoginTestCase, FederatedCloudTestCase):
    """The tests; a subclass names its ``provider`` and reads its token endpoint's record."""

    authz_id: str
    #: which of the tokens Galaxy stored for the login the cloud exchanges
    login_token = "id_token"

    @classmethod
    def handle_galaxy_config_kwds(cls, config):
        super().handle_galaxy_config_kwds(config)
        config["job_config_file"], cls.gate = write_gated_job_conf(cls.oidc_dir)

    @classmethod
    def set_up_logins(cls):
        super().set_up_logins()
        # No secret in the authorization: which app (Azure) or pool provider (GCP), and alice's login.
        response = cls.api_as(cls.alice, "post", "cloud/authz", json={
            "provider": cls.provider,
            "authn_id": cls.alice.authn_id,
            "config": cls.cloud.authz_config,
            "description": "alice's lab bucket, through her login",
        })  # fmt: skip
        assert response.status_code == 200, response.text
        cls.authz_id = response.json()["id"]

    def setUp(self):
        super().setUp()
        self.dataset_populator = DatasetPopulator(self.galaxy_interactor)
        self.history_id = self.dataset_populator.new_history()

    # -- per cloud -----------------------------------------------------------------------------------

    def exchanges(self) -> list[Exchange]:
        """The token endpoint's record of every exchange so far, oldest first."""
        raise NotImplementedError

    def check_exchange(self, exchange: Exchange) -> None:
        """What else the cloud's record says of an exchange for this authorization."""
        raise NotImplementedError

    def exchange_directly(self, login_token: str) -> str:
        """A cloud token for ``login_token``, asked for by the test itself (not through Galaxy)."""
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------------------

    def cloud_get(self, objects, **extra):
        payload = {
            "history_id": self.history_id,
            "authz_id": self.authz_id,
            "bucket": self.cloud.bucket,
            "objects": objects,
            **extra,
        }
        return self._post("cloud/storage/get", payload, json=True)

    def cloud_send(self, **extra):
        payload = {"history_id": self.history_id, "authz_id": self.authz_id, "bucket": self.cloud.bucket, **extra}
        return self._post("cloud/storage/send", payload, json=True)

    def object_keys(self) -> list[str]:
        return self.cloud.admin.list_keys(self.cloud.bucket)

    def transfer_one(self, key: str, body: bytes) -> tuple[dict, requests.Response]:
        """A get of ``key`` that must succeed; returns the finished job and the API's answer."""
        self.cloud.admin.put_object(self.cloud.bucket, key, body)
        response = self.cloud_get([key])
        assert response.status_code == 200, response.text
        job = self.wait_for_job(response.json()[0]["job_id"])
        assert job["state"] == "ok", job
        assert self.dataset_bytes(response.json()[0]["id"]) == body
        return job, response

    def send_one(self, content: str, name: str) -> tuple[str, requests.Response]:
        """A send of a new dataset that must succeed; returns the object's key and the API's answer."""
        dataset = self.dataset_populator.new_dataset(self.history_id, content=content, name=name, wait=True)
        response = self.cloud_send(dataset_ids=[dataset["id"]])
        assert response.status_code == 200, response.text
        label = json.loads(response.json()["sent_dataset_labels"][0])
        job = self.wait_for_job(label["job_id"])
        assert job["state"] == "ok", job
        assert self.cloud.admin.get_object(self.cloud.bucket, label["object"]) == content.encode()
        return label["object"], response

    @staticmethod
    def wait_for_a_new_second(id_token: str) -> None:
        """Until the clock is past the second ``id_token`` was issued in: a token refreshed within
        that second could carry the very same claims."""
        issued_at = jwt.decode(id_token, options={"verify_signature": False})["iat"]
        time.sleep(max(0.0, issued_at + 1 - time.time()))

    def assert_exchanges_of(self, exchanges: list[Exchange], login_token: str) -> None:
        """Each one accepted, of alice's login at this provider, the very token Galaxy holds."""
        for exchange in exchanges:
            assert exchange.ok, exchange.record
            assert (exchange.iss, exchange.sub) == (self.issuer, SUBJECT), exchange.record
            assert oidc_provider.CLIENT_ID in exchange.aud, exchange.record
            assert exchange.token_sha256 == sha256(login_token), exchange.record
            self.check_exchange(exchange)

    # -- get and send ------------------------------------------------------------------------------

    def test_get_and_send_exchange_the_login_at_request_and_at_job_run(self):
        body = b"@read1\nACGT\n+\nIIII\n"
        self.cloud.admin.put_object(self.cloud.bucket, "reads/sample1.fastq", body)
        before = len(self.exchanges())
        response = self.cloud_get(["reads/sample1.fastq"])
        assert response.status_code == 200, response.text
        summary = response.json()[0]
        job = self.wait_for_job(summary["job_id"])
        assert job["state"] == "ok", job
        assert self.dataset_bytes(summary["id"]) == body
        get_exchanges = self.exchanges()[before:]

        key, _ = self.send_one("sent by alice\n", "alice results.txt")
        assert key == "alice_results.txt"
        exchanges = self.exchanges()[before:]

        # Each request: one exchange to check the bucket and objects before the job is created, one
        # when the job runs; none in between (nothing minted at queue time, nothing cached).
        assert len(get_exchanges) == 2 and len(exchanges) == 4, exchanges
        created = datetime.fromisoformat(job["create_time"]).replace(tzinfo=timezone.utc).timestamp()
        assert get_exchanges[0].time < created < get_exchanges[1].time, (get_exchanges, job["create_time"])
        self.assert_exchanges_of(exchanges, self.stored_tokens(self.alice)[self.login_token])

    # -- the id_token's refresh ------------------------------------------------------------------

    def test_expired_id_token_is_refreshed_through_galaxy(self):
        self.transfer_one("before-expiry.txt", b"fresh token\n")
        old = self.make_id_token_look_expired(self.alice)
        self.wait_for_a_new_second(old["id_token"])
        before = len(self.exchanges())

        self.transfer_one("after-expiry.txt", b"refreshed token\n")

        new = self.stored_tokens(self.alice)
        assert new["id_token"] != old["id_token"]
        assert new["auth_time"] > old["auth_time"]
        exchanges = self.exchanges()[before:]
        # The cloud saw the refreshed token, both at the request and when the job ran.
        assert len(exchanges) == 2, exchanges
        self.assert_exchanges_of(exchanges, new[self.login_token])

    def test_a_job_that_waited_past_the_id_tokens_expiry_gets_credentials_of_the_refreshed_login(self):
        """Credentials are minted as the job starts (tickets.py), in Galaxy's web process, which
        refreshes the login there: not in the job handler, whose refresh of Galaxy's own fails."""
        self.cloud.admin.put_object(self.cloud.bucket, "waited.txt", b"waited in a queue\n")
        open(self.gate, "w").close()
        try:
            response = self.cloud_get(["waited.txt"])
            assert response.status_code == 200, response.text
            summary = response.json()[0]
            self.wait_for_credentials(summary["job_id"])  # prepared, waiting before its tool
            old = self.make_id_token_look_expired(self.alice)
            self.wait_for_a_new_second(old["id_token"])
            before = len(self.exchanges())
        finally:
            os.unlink(self.gate)

        job = self.wait_for_job(summary["job_id"])
        assert job["state"] == "ok", job
        assert self.dataset_bytes(summary["id"]) == b"waited in a queue\n"
        new = self.stored_tokens(self.alice)
        assert new["id_token"] != old["id_token"]
        exchanges = self.exchanges()[before:]
        assert len(exchanges) == 1, exchanges  # the job's own, as it started, with the new token
        self.assert_exchanges_of(exchanges, new[self.login_token])

    def test_revoked_grant_asks_to_log_in_again_and_creates_nothing(self):
        self.cloud.admin.put_object(self.cloud.bucket, "needs-login.txt", b"x")
        dataset = self.dataset_populator.new_dataset(self.history_id, content="y\n", name="y.txt", wait=True)
        before_history, before_jobs, before_exchanges = self.history_size(), self.job_count(), len(self.exchanges())
        before_objects = self.object_keys()
        try:
            # The user (or the provider's admin) ended the grant; then the id_token expires, so the
            # plugin has to refresh it, and the provider refuses.
            oidc_provider.revoke(self.issuer, self.stored_tokens(self.alice)["refresh_token"])
            self.make_id_token_look_expired(self.alice)

            got = self.cloud_get(["needs-login.txt"])
            sent = self.cloud_send(dataset_ids=[dataset["id"]])
            for response in (got, sent):
                assert response.status_code == 401, response.text
                message = response.json()["err_msg"]
                assert "log in to galaxy again" in message.lower(), message
                assert oidc_provider.LABEL in message, message  # as Galaxy's login page names it
            assert self.history_size() == before_history
            assert self.job_count() == before_jobs
            assert len(self.exchanges()) == before_exchanges  # the expired token was never sent
            assert self.object_keys() == before_objects
        finally:
            # Logging in again renews the same identity: the authorization works again.
            again = self.oidc_login("alice")
            assert again.authn_id == self.alice.authn_id
        self.transfer_one("after-login.txt", b"logged in again\n")

    # -- invariant 2 -------------------------------------------------------------------------------

    def test_no_login_or_cloud_token_is_stored_logged_or_shown(self):
        before = len(self.exchanges())
        _, got = self.transfer_one("inv2/get.txt", b"get\n")
        old = self.make_id_token_look_expired(self.alice)  # a refresh too: both logins' tokens
        self.wait_for_a_new_second(old["id_token"])
        _, refreshed = self.transfer_one("inv2/get-after-refresh.txt", b"get after refresh\n")
        _, sent = self.send_one("send\n", "inv2-send.txt")
        new = self.stored_tokens(self.alice)
        exchanges = self.exchanges()[before:]
        assert len(exchanges) == 6 and all(e.ok for e in exchanges), exchanges  # 3 requests, 3 jobs
        assert new["id_token"] != old["id_token"]

        secrets = {
            f"OIDC {name} ({when})": tokens[name]
            for when, tokens in (("before the refresh", old), ("now", new))
            for name in OIDC_TOKENS
        }
        self.assert_no_credential_anywhere(secrets, {
            "POST /api/cloud/storage/get": got.text,
            "POST /api/cloud/storage/get (after the refresh)": refreshed.text,
            "POST /api/cloud/storage/send": sent.text,
            f"GET /api/cloud/authz/{self.authz_id}": self._get(f"cloud/authz/{self.authz_id}").text,
        })  # fmt: skip
        # The search above recognises the cloud's tokens by their shape: it does find a real one.
        issued = self.exchange_directly(new[self.login_token])
        assert self.issued_tokens_in(f"... {issued} ..."), issued


class TestAzureFederated(FederatedTransferSuite):
    provider = "azure"

    def exchanges(self) -> list[Exchange]:
        return [
            Exchange(r["time"], r["outcome"] == "issued", r.get("iss", ""), r.get("sub", ""), tuple(r.get("aud") or ()),
                     r.get("assertion_sha256", ""), r)
            for r in entra_token_server.exchanges(os.path.join(self.cloud_dir, "entra_exchanges.jsonl"))
        ]  # fmt: skip

    def check_exchange(self, exchange: Exchange) -> None:
        record, config = exchange.record, self.cloud.authz_config
        assert (record["tenant"], record["client_id"], record["grant"]) == (
            config["tenant_id"],
            config["client_id"],
            "client_assertion",
        ), record

    def issued_tokens_in(self, haystack: str) -> list[str]:
        # The token server does not say what it issued: any JWT that Entra's access token issuer
        # signed is one (the OpenID provider's own JWTs are searched for by value).
        found = []
        for candidate in set(JWT.findall(haystack)):
            try:
                claims = jwt.decode(candidate, options={"verify_signature": False})
            except jwt.PyJWTError:
                continue
            if str(claims.get("iss", "")).startswith(AZURE_ISSUER_PREFIX):
                found.append(f"an Azure access token (aud {claims.get('aud')}, exp {claims.get('exp')})")
        return found

    def exchange_directly(self, id_token: str) -> str:
        config = self.cloud.authz_config
        response = requests.post(
            f"{self.cloud.settings['authority_host'].rstrip('/')}/{config['tenant_id']}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": config["client_id"],
                "scope": "https://storage.azure.com/.default",
                "client_assertion_type": entra_token_server.CLIENT_ASSERTION_TYPE,
                "client_assertion": id_token,
            },
            verify=self.cloud.settings["ca_bundle"],
            timeout=30,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        assert jwt.decode(token, options={"verify_signature": False})["aud"] == "https://storage.azure.com"
        return token


class TestGcpFederated(FederatedTransferSuite):
    provider = "gcp"

    def exchanges(self) -> list[Exchange]:
        path = os.path.join(self.cloud_dir, "google_sts_exchanges.jsonl")  # written at the first exchange
        records = []
        if os.path.exists(path):
            with open(path) as fh:
                records = [json.loads(line) for line in fh if line.strip()]
        return [
            Exchange(r["time"], r["outcome"] == "ok", r.get("iss") or "", r.get("sub") or "", _audiences(r.get("aud")),
                     r.get("subject_token_sha256", ""), r)
            for r in records
        ]  # fmt: skip

    def check_exchange(self, exchange: Exchange) -> None:
        # Straight to a federated token for alice's principal: no service account in between.
        record = exchange.record
        assert record["endpoint"] == "/v1/token", record
        assert record["audience"] == self.cloud.authz_config["audience"] == GCP_AUDIENCE, record
        assert record["principal"] == f"principal://iam.googleapis.com/{GCP_POOL}/subject/{SUBJECT}", record

    def issued_tokens_in(self, haystack: str) -> list[str]:
        return [f"a GCS access token ({GCS_TOKEN_PREFIX}...)"] if GCS_TOKEN_PREFIX in haystack else []

    def exchange_directly(self, id_token: str) -> str:
        response = requests.post(
            self.cloud.settings["token_url"],
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "audience": self.cloud.authz_config["audience"],
                "scope": "https://www.googleapis.com/auth/devstorage.read_write",
                "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "subject_token": id_token,
            },
            timeout=30,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()["access_token"]


def _audiences(aud) -> tuple[str, ...]:
    return (aud,) if isinstance(aud, str) else tuple(aud or ())


class TestOpenStackFederated(FederatedTransferSuite):
    provider = "openstack"
    cloud_options = {"keystone": True}
    login_token = "access_token"

    def exchanges(self) -> list[Exchange]:
        path = self.cloud.validations_path  # written at the first validation
        records = []
        if os.path.exists(path):
            with open(path) as fh:
                records = [json.loads(line) for line in fh if line.strip()]
        return [
            Exchange(r["time"], r["outcome"] == "ok", r.get("iss") or "", r.get("sub") or "",
                     (r.get("client_id") or "",), r["token_sha256"], r)
            for r in records
        ]  # fmt: skip

    def check_exchange(self, exchange: Exchange) -> None:
        # An access token issued to Galaxy's client, which the provider said was active.
        assert exchange.record["client_id"] == oidc_provider.CLIENT_ID, exchange.record

    def issued_tokens_in(self, haystack: str) -> list[str]:
        return [f"a Keystone token ({token[:12]}...)" for token in set(KEYSTONE_TOKEN.findall(haystack))]

    def exchange_directly(self, login_token: str) -> str:
        keystone_url = self.cloud.settings["keystone_url"].rstrip("/")
        response = requests.post(
            f"{keystone_url}/OS-FEDERATION/identity_providers/{keystone_aio.IDP}/protocols/{keystone_aio.PROTOCOL}/auth",
            headers={"Authorization": f"Bearer {login_token}"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return response.headers["X-Subject-Token"]

"""/api/cloud/authz in a real Galaxy: the seed's record view, isolation, bad input, secrets."""

import json
import os

import requests
from base import CloudStorageTestCase
from galaxy.model import UserAuthnzToken
from sqlalchemy import select

ROLE = "arn:aws:iam::123456789012:role/galaxy-demo"
KEYSTONE = "http://127.0.0.1:5000/v3"
STATIC_SECRET = "s3cr3t-Static-Key-that-must-never-leak"
AZURE_SECRET = "azure-Secret-that-must-never-leak"
RECORD_KEYS = {
    "id", "user_id", "authn_id", "provider", "config", "description", "model_class",
    "create_time", "last_update", "last_activity",
}  # fmt: skip


def aws(role=ROLE, **extra):
    return {"provider": "aws", "config": {"role_arn": role, **extra}}


class TestCloudAuthzApi(CloudStorageTestCase):
    plugin_config = {
        "providers": {
            "aws": {"allow_stored_secrets": True},
            "gcp": {"enabled": False},
            "openstack": {"enabled": True, "keystone_url": KEYSTONE},
        },
        "max_request_bytes": 4096,
    }

    def setUp(self):
        super().setUp()
        self.email = self.current_email()
        if not hasattr(type(self), "authn_id"):
            type(self).authn_id = self.add_oidc_identity(self.email)

    def create(self, payload, status=200):
        response = self._post("cloud/authz", payload, json=True)
        assert response.status_code == status, response.text
        return response.json()

    # -- the record, as seed 001 shows it -----------------------------------------------------------

    def test_create_show_list_update_delete(self):
        record = self.create({**aws(), "description": "my lab", "authn_id": self.authn_id})
        assert set(record) == RECORD_KEYS
        assert record["model_class"] == "CloudAuthz"
        assert record["provider"] == "aws"
        assert record["authn_id"] == self.authn_id
        assert record["user_id"] == self._get("users/current").json()["id"]
        assert record["config"] == {"role_arn": ROLE, "token_ttl": 3600}
        authz_id = record["id"]

        assert self._get(f"cloud/authz/{authz_id}").json() == record
        assert authz_id in [r["id"] for r in self._get("cloud/authz").json()]

        updated = self._put(
            f"cloud/authz/{authz_id}",
            {"description": "renamed", "config": {"role_arn": ROLE, "token_ttl": 7200}},
            json=True,
        )
        assert updated.status_code == 200, updated.text
        assert updated.json()["description"] == "renamed"
        assert updated.json()["config"]["token_ttl"] == 7200
        assert updated.json()["create_time"] == record["create_time"]

        deleted = self._delete(f"cloud/authz/{authz_id}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["id"] == authz_id
        self.assert_error(self._get(f"cloud/authz/{authz_id}"), 404, "not found")
        assert authz_id not in [r["id"] for r in self._get("cloud/authz").json()]

    def test_identity_is_taken_when_there_is_exactly_one(self):
        with self._different_user("one-identity@example.org"):
            self.assert_error(self._post("cloud/authz", aws(), json=True), 400, "log in")
            identity = self.add_oidc_identity("one-identity@example.org")
            record = self.create(aws())
            assert record["authn_id"] == identity
            self.add_oidc_identity("one-identity@example.org", provider="keycloak")
            self.assert_error(self._post("cloud/authz", aws(role=ROLE + "-2"), json=True), 400, "authn_id")

    def test_duplicate_is_refused(self):
        first = self.create(aws(role=ROLE + "-dup", token_ttl=900))
        self.assert_error(
            self._post("cloud/authz", aws(role=ROLE + "-dup", token_ttl=900), json=True), 400, first["id"]
        )
        self.create(aws(role=ROLE + "-dup", token_ttl=1800))  # another config is another record

    # -- isolation, both ways -----------------------------------------------------------------------

    def test_users_reach_only_their_own(self):
        mine = self.create(aws(role=ROLE + "-mine"))
        with self._different_user("other@example.org"):
            other_identity = self.add_oidc_identity("other@example.org")
            theirs = self.create(aws(role=ROLE + "-theirs"))
            assert mine["id"] not in [r["id"] for r in self._get("cloud/authz").json()]
            for response in (
                self._get(f"cloud/authz/{mine['id']}"),
                self._put(f"cloud/authz/{mine['id']}", {"description": "hijacked"}, json=True),
                self._delete(f"cloud/authz/{mine['id']}"),
            ):
                self.assert_error(response, 404, "not found")
            # my OIDC identity is not theirs to use
            self.assert_error(self._post("cloud/authz", {**aws(), "authn_id": self.authn_id}, json=True), 404)
        assert self._get(f"cloud/authz/{mine['id']}").json() == mine
        assert theirs["id"] not in [r["id"] for r in self._get("cloud/authz").json()]
        self.assert_error(self._get(f"cloud/authz/{theirs['id']}"), 404, "not found")
        self.assert_error(self._delete(f"cloud/authz/{theirs['id']}"), 404, "not found")
        self.assert_error(self._post("cloud/authz", {**aws(), "authn_id": other_identity}, json=True), 404)

    def test_anonymous_gets_403(self):
        url = self._api_url("cloud/authz")
        for response in (requests.get(url), requests.post(url, json=aws())):
            self.assert_error(response, 403)

    # -- bad input: always a 4xx naming the problem, never a 500 ------------------------------------

    def test_bad_payloads(self):
        cases = [
            ({"config": {"role_arn": ROLE}}, 400, "provider"),
            ({"provider": "dropbox", "config": {}}, 400, "provider"),
            ({"provider": "gcp", "config": {"project": "my-project"}}, 400, "not enabled"),
            ({"provider": "aws"}, 400, "config"),
            ({"provider": "aws", "config": "role"}, 400, "config"),
            ({"provider": "aws", "config": {}}, 400, "role_arn"),
            ({"provider": "aws", "config": {"role_arn": "arn:aws:iam::1:role/x"}}, 400, "config.role_arn"),
            (aws(token_ttl="long"), 400, "config.token_ttl"),
            (aws(token_ttl=60), 400, "config.token_ttl"),
            (aws(token_ttl=50000), 400, "config.token_ttl"),
            (aws(endpoint_url="http://evil.example.org"), 400, "config.endpoint_url"),
            ({**aws(), "bucket": "x"}, 400, "bucket"),
            ({**aws(), "authn_id": "not-an-id"}, 400, "authn_id"),
            ({**aws(), "authn_id": 12}, 400, "authn_id"),
            ({**aws(), "description": "x" * 2000}, 400, "description"),
            (aws(access_key_id="AKIAEXAMPLE"), 400, "secret_access_key"),
            (
                {**aws(), "config": {"role_arn": ROLE, "access_key_id": "AKIA", "secret_access_key": "x"}},
                400,
                "not both",
            ),
            (
                {"provider": "azure", "config": {"tenant_id": "x", "client_id": "y", "storage_account": "acct"}},
                400,
                "config.tenant_id",
            ),
            (
                {"provider": "azure", "config": {"storage_account": "acct", "sas_token": "sv=x"}},
                400,
                "allow_stored_secrets",
            ),
            (
                {
                    "provider": "openstack",
                    "config": {
                        "identity_provider": "galaxy",
                        "protocol": "openid",
                        "project_name": "p",
                        "auth_url": "http://evil.example.org/v3",
                    },
                },
                400,
                "config.auth_url",
            ),
        ]
        for payload, status, word in cases:
            self.assert_error(self._post("cloud/authz", payload, json=True), status, word)
        url = self._api_url("cloud/authz", use_key=True)
        for body in ([aws()], "a string", 42, None):
            self.assert_error(requests.post(url, json=body), 400)

    def test_bad_bodies_and_ids(self):
        url = self._api_url("cloud/authz", use_key=True)
        self.assert_error(requests.post(url, data="{not json", headers={"content-type": "application/json"}), 400)
        self.assert_error(requests.post(url, data=b"", headers={"content-type": "application/json"}), 400)
        self.assert_error(requests.post(url, json={**aws(), "description": "x" * 5000}), 413, "larger than")
        chunks = (b"x" * 1024 for _ in range(10))  # no content-length: chunked
        self.assert_error(requests.post(url, data=chunks, headers={"content-type": "application/json"}), 413)
        record = self.create(aws(role=ROLE + "-ids"))
        for bad_id in ("notanid", "123", "zzzzzzzzzzzzzzzz"):
            self.assert_error(self._get(f"cloud/authz/{bad_id}"), 400)
            self.assert_error(self._delete(f"cloud/authz/{bad_id}"), 400)
        missing = self._app.security.encode_id(10**6)
        self.assert_error(self._get(f"cloud/authz/{missing}"), 404)
        self.assert_error(self._put(f"cloud/authz/{missing}", {"description": "x"}, json=True), 404)
        put_url = self._api_url(f"cloud/authz/{record['id']}", use_key=True)
        self.assert_error(requests.put(put_url, data="[", headers={"content-type": "application/json"}), 400)
        self.assert_error(self._put(f"cloud/authz/{record['id']}", {"provider": "azure"}, json=True), 400, "provider")
        self.assert_error(
            self._put(f"cloud/authz/{record['id']}", {"config": {"role_arn": "nope"}}, json=True),
            400,
            "config.role_arn",
        )
        self.assert_error(self._put(f"cloud/authz/{record['id']}", {"colour": "red"}, json=True), 400, "colour")
        assert self._get(f"cloud/authz/{record['id']}").json() == record

    # -- secrets: admin-enabled, vault only, never shown --------------------------------------------

    def test_stored_secret_lives_in_the_vault_only(self):
        record = self.create(
            {"provider": "aws", "config": {"access_key_id": "AKIAEXAMPLEKEY", "secret_access_key": STATIC_SECRET}}
        )
        assert record["config"] == {
            "access_key_id": "AKIAEXAMPLEKEY",
            "secret_access_key": "********",
            "token_ttl": 3600,
        }
        assert record["authn_id"] is None or record["authn_id"] == self.authn_id
        responses = [self._get("cloud/authz"), self._get(f"cloud/authz/{record['id']}")]
        # sending the redaction back keeps the secret
        kept = self._put(f"cloud/authz/{record['id']}", {"config": record["config"], "description": "kept"}, json=True)
        responses.append(kept)
        assert kept.status_code == 200, kept.text
        manager = self._plugin_manager()
        assert manager.read_secrets(self._record(record["id"])) == {"secret_access_key": STATIC_SECRET}
        # a new value replaces it
        new_secret = STATIC_SECRET + "-rotated"
        replaced = self._put(
            f"cloud/authz/{record['id']}",
            {"config": {"access_key_id": "AKIAEXAMPLEKEY", "secret_access_key": new_secret}},
            json=True,
        )
        responses.append(replaced)
        assert manager.read_secrets(self._record(record["id"])) == {"secret_access_key": new_secret}
        for response in responses:
            assert STATIC_SECRET not in response.text
        self.assert_not_in_database(STATIC_SECRET, new_secret)
        self.assert_error(
            self._put(
                f"cloud/authz/{record['id']}",
                {"config": {"role_arn": ROLE, "secret_access_key": "********"}},
                json=True,
            ),
            400,
        )
        self._delete(f"cloud/authz/{record['id']}")
        vault = self._app.vault
        assert not vault.read_secret(
            f"user/{self._record_owner()}/cloud_storage/authz/{self._app.security.decode_id(record['id'])}/secret_access_key"
        )

    def test_openstack_auth_url_may_repeat_the_admins(self):
        config = {
            "identity_provider": "galaxy",
            "protocol": "openid",
            "project_name": "demo",
            "auth_url": KEYSTONE + "/",
        }
        record = self.create({"provider": "openstack", "config": config})
        assert record["config"]["project_name"] == "demo"

    # -- OpenAPI -----------------------------------------------------------------------------------

    def test_routes_are_documented(self):
        schema = self._get("/openapi.json").json()
        paths = schema["paths"]
        assert set(paths["/api/cloud/authz"]) == {"get", "post"}
        assert set(paths["/api/cloud/authz/{authz_id}"]) == {"get", "put", "delete"}
        for path in ("/api/cloud/authz", "/api/cloud/authz/{authz_id}"):
            for operation in paths[path].values():
                assert operation["tags"] == ["cloud"]
                assert operation["summary"]
        assert set(paths["/api/cloud/storage/buckets"]) == {"get"}
        assert set(paths["/api/cloud/storage/objects"]) == {"get"}
        for path in ("/api/cloud/storage/buckets", "/api/cloud/storage/objects"):
            for parameter in paths[path]["get"]["parameters"]:
                assert parameter.get("description"), (path, parameter["name"])
        get_payload = schema["components"]["schemas"]["CloudStorageGetPayload"]
        assert {"prefix", "include", "exclude", "collection", "dry_run"} <= set(get_payload["properties"])
        assert any("prefix" in example for example in get_payload["examples"])
        send_payload = schema["components"]["schemas"]["CloudStorageSendPayload"]
        assert {"collection_ids", "key_prefix", "dry_run"} <= set(send_payload["properties"])
        assert any(tag["name"] == "cloud" and tag.get("description") for tag in schema["tags"])
        assert "CloudAuthzResponse" in schema["components"]["schemas"]
        assert len(paths) > 300  # Galaxy's own paths are still there
        docs = self._get("/api/docs")
        assert docs.status_code == 200

    # -- helpers -----------------------------------------------------------------------------------

    def _plugin_manager(self):
        from galaxy_cloud_storage.authz.manager import CloudAuthzManager

        return self._app[CloudAuthzManager]

    def _record(self, encoded_id):
        from galaxy_cloud_storage.model import CloudAuthz

        session = self._app.model.session
        session.expire_all()
        return session.get(CloudAuthz, self._app.security.decode_id(encoded_id))

    def _record_owner(self):
        session = self._app.model.session
        token = session.scalars(
            select(UserAuthnzToken).where(UserAuthnzToken.id == self._app.security.decode_id(self.authn_id))
        ).one()
        return token.user_id

    def assert_not_in_database(self, *secrets):
        url = self._app.config.database_connection
        path = url.split("sqlite:///", 1)[1].split("?", 1)[0]
        with open(path, "rb") as fh:
            data = fh.read()
        for extra in (path + "-wal", path + "-journal"):
            if os.path.exists(extra):
                with open(extra, "rb") as fh:
                    data += fh.read()
        for secret in secrets:
            assert secret.encode() not in data
        assert json.dumps(secrets[0]).encode() not in data


class TestWithoutVault(CloudStorageTestCase):
    """Stored secrets need a vault even where the admin allows them."""

    with_vault = False
    plugin_config = {"providers": {"azure": {"allow_stored_secrets": True}}}

    def test_secret_mode_needs_a_vault(self):
        response = self._post(
            "cloud/authz",
            {"provider": "azure", "config": {"storage_account": "acct", "sas_token": AZURE_SECRET}},
            json=True,
        )
        assert response.status_code == 400, response.text
        assert "vault" in response.json()["err_msg"]
        assert AZURE_SECRET not in response.text
        assert self._get("cloud/authz").json() == []

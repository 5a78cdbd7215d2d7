from base import CloudStorageTestCase


class TestSmoke(CloudStorageTestCase):
    def test_list_empty(self):
        r = self._get("cloud/authz")
        print(r.status_code, r.text)
        assert r.status_code == 200, r.text
        email = self.current_email()
        authn = self.add_oidc_identity(email)
        r = self._post("cloud/authz", {"provider": "aws", "config": {"role_arn": "arn:aws:iam::123456789012:role/galaxy"}}, json=True)
        print(r.status_code, r.text)
        assert r.status_code == 200
        r = self._get("/openapi.json")
        print(r.status_code, [p for p in r.json()["paths"] if "cloud" in p], len(r.json()["paths"]))

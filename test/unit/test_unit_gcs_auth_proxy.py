"""providers.gcp.GcsStorage through galaxy_cloud_storage_testing/gcs_auth_proxy.py: Cloud Storage's 401/403/404 with
real tokens. Three real servers on 127.0.0.1, each a subprocess: fake-gcs-server, the token server
(google_sts_server.py) and the proxy, which allows one service account to write one bucket.

Tokens come from the token server as the plugin would get them: a service account key's JWT-bearer
grant, then (for a second identity, or a short-lived token) IAM Credentials' generateAccessToken.
"""

import contextlib
import os
import subprocess
import threading
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from file_bytes import sha256
from gcp_servers import free_port, stop, token_server

from galaxy_cloud_storage.providers.gcp import GcpSettings
from galaxy_cloud_storage.providers.gcp.storage import GcpCredentials, GcsStorage
from galaxy_cloud_storage.providers.settings import MiB
from galaxy_cloud_storage.providers.storage import AccessDenied, BucketNotFound, ObjectInfo
from galaxy_cloud_storage_testing import fake_gcs, gcs_auth_proxy
from galaxy_cloud_storage_testing.gcs_auth_proxy import Need, parse_allow, Policy, route

WRITER = "writer@galaxy-project.iam.gserviceaccount.com"  # holds a key; objectAdmin on OWN
READER = "reader@galaxy-project.iam.gserviceaccount.com"  # objectViewer on OWN, via impersonation
OWN, OTHER, MISSING = "own-bucket", "other-bucket", "no-such-bucket"
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
CONFIG = {"project": "galaxy-project"}
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def sts(key, tmp_path_factory):
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    config = {
        # The writer may mint tokens for the reader, and short-lived ones for itself
        # (roles/iam.serviceAccountTokenCreator).
        "service_accounts": [
            {"email": WRITER, "public_keys": {"k1": public}, "bindings": [f"serviceAccount:{WRITER}"]},
            {"email": READER, "bindings": [f"serviceAccount:{WRITER}"]},
        ],
    }
    with token_server(config, str(tmp_path_factory.mktemp("google-sts"))) as (url, _log):
        yield url


@contextlib.contextmanager
def running(command: list[str], log_path: str, ready_url: str, what: str):
    from galaxy_cloud_storage_testing.storage_servers import wait_until

    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: requests.get(ready_url, timeout=2).ok, process, what, 30)
        yield process
    finally:
        stop(process)


@pytest.fixture(scope="module")
def servers(sts, tmp_path_factory):
    """(FakeGcsAdmin on the direct URL, proxy URL, proxy process, proxy log path)."""
    directory = tmp_path_factory.mktemp("gcs-auth-proxy")
    gcs_port, proxy_port = free_port(), free_port()
    direct, proxy_url = f"http://127.0.0.1:{gcs_port}", f"http://127.0.0.1:{proxy_port}"
    config_path = str(directory / "grants.json")
    with open(config_path, "w") as fh:
        fh.write(f'{{"grants": {{"serviceAccount:{WRITER}": {{"{OWN}": "write"}}}}}}')
    proxy_command = gcs_auth_proxy.command(proxy_port, direct, sts, config_path) + [
        "--allow",
        f"serviceAccount:{READER}={OWN}:read",
    ]
    log_path = str(directory / "proxy.log")
    with (
        running(
            fake_gcs.command(gcs_port, external_url=proxy_url),
            str(directory / "fake-gcs.log"),
            f"{direct}/storage/v1/b",
            "fake-gcs-server",
        ),
        running(proxy_command, log_path, f"{proxy_url}{gcs_auth_proxy.HEALTH_PATH}", "gcs_auth_proxy") as proxy,
    ):
        yield fake_gcs.FakeGcsAdmin(direct, sts, storage_endpoint=proxy_url), proxy_url, proxy, log_path


@pytest.fixture
def admin(servers):
    admin = servers[0]
    for bucket in admin.client().list_buckets():
        admin.delete_bucket(bucket.name)
    admin.create_bucket(OWN)
    admin.create_bucket(OTHER)
    return admin


@pytest.fixture(scope="module")
def writer_token(sts, key) -> str:
    now = int(time.time())
    claims = {"iss": WRITER, "scope": SCOPE, "aud": f"{sts}/token", "iat": now, "exp": now + 600}
    assertion = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    answer = requests.post(f"{sts}/token", data={"grant_type": JWT_BEARER, "assertion": assertion}, timeout=10)
    answer.raise_for_status()
    return answer.json()["access_token"]


def impersonate(sts: str, bearer: str, email: str, lifetime: int = 3600) -> str:
    url = f"{sts}/v1/projects/-/serviceAccounts/{email}:generateAccessToken"
    answer = requests.post(
        url,
        json={"scope": [SCOPE], "lifetime": f"{lifetime}s"},
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()["accessToken"]


def storage(servers, token: str, **settings) -> GcsStorage:
    return GcsStorage(
        GcpSettings(storage_endpoint=servers[1], retry_timeout=5, **settings), GcpCredentials(token), CONFIG
    )


def peak_rss(process) -> int:
    with open(f"/proc/{process.pid}/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))


# --- through the proxy --------------------------------------------------------------------------------


def test_round_trip_40_mib_streams_through_the_proxy(servers, admin, writer_token, tmp_path):
    gcs = storage(servers, writer_token, chunk_size=16 * MiB)  # 3 chunks up, 3 ranges down
    urls, lock = [], threading.Lock()

    def record(response, **kwargs):
        with lock:
            urls.append((response.request.method, response.request.url, response.status_code))

    gcs.session.hooks["response"].append(record)
    data = os.urandom(40 * MiB)
    source = tmp_path / "source"
    source.write_bytes(data)
    gcs.check_bucket(OWN)
    before = peak_rss(servers[2])

    assert gcs.upload(str(source), OWN, "big/40 MiB.bin").size == len(data)
    assert sha256(admin.get_object(OWN, "big/40 MiB.bin")) == sha256(data)  # read back directly
    target = tmp_path / "target"
    assert gcs.download(OWN, "big/40 MiB.bin", str(target)).size == len(data)
    assert sha256(target.read_bytes()) == sha256(data)

    # Every request, the resumable session's chunks and the ranged GETs included, went through the
    # proxy: the session URL and mediaLink point at it.
    assert {url.split("/")[2] for _, url, _ in urls} == {servers[1].split("/")[2]}
    assert [status for method, url, status in urls if method == "PUT"] == [308, 308, 200]
    assert len([url for method, url, _ in urls if method == "GET" and "alt=media" in url]) == 3
    # Streamed: a 16 MiB request or answer held whole would raise the proxy's peak memory by as much.
    assert peak_rss(servers[2]) - before < 8 * MiB


def test_own_bucket_allowed(servers, admin, writer_token):
    admin.put_object(OWN, "a.txt", b"abc")
    gcs = storage(servers, writer_token)
    gcs.check_bucket(OWN)
    assert gcs.stat(OWN, "a.txt") == ObjectInfo("a.txt", 3)
    assert gcs.stat(OWN, "missing.txt") is None  # the object's 404 comes through


def test_other_bucket_denied(servers, admin, writer_token, tmp_path):
    admin.put_object(OTHER, "a.txt", b"abc")
    gcs = storage(servers, writer_token)
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(os.urandom(4 * MiB))  # one multipart request, body and all
    large.write_bytes(os.urandom(9 * MiB))  # resumable: refused at the session's creation
    for attempt in (
        lambda: gcs.check_bucket(OTHER),
        lambda: gcs.stat(OTHER, "a.txt"),
        lambda: gcs.download(OTHER, "a.txt", str(tmp_path / "out")),
        lambda: gcs.upload(str(small), OTHER, "new.bin"),
        lambda: gcs.upload(str(large), OTHER, "new.bin"),
    ):
        with pytest.raises(AccessDenied, match="bucket 'other-bucket' denied \\(HTTP 403\\).*check its IAM roles"):
            attempt()
    assert admin.list_keys(OTHER) == ["a.txt"]
    assert not (tmp_path / "out").exists()


def test_missing_bucket_not_found(servers, admin, writer_token, tmp_path):
    gcs = storage(servers, writer_token)
    source = tmp_path / "source"
    source.write_bytes(b"abc")
    for attempt in (
        lambda: gcs.check_bucket(MISSING),
        lambda: gcs.download(MISSING, "a.txt", str(tmp_path / "out")),
        lambda: gcs.upload(str(source), MISSING, "a.txt"),
    ):
        with pytest.raises(BucketNotFound, match=f"Bucket '{MISSING}' does not exist"):
            attempt()


def test_bogus_token_refused(servers, admin):
    gcs = storage(servers, "ya29.local-not-a-token-this-server-issued")
    with pytest.raises(AccessDenied, match="HTTP 401.*access token has expired or was revoked"):
        gcs.check_bucket(OWN)
    with pytest.raises(AccessDenied, match="HTTP 401"):
        gcs.check_bucket(MISSING)  # authentication first: a bad token learns nothing of buckets


def test_expired_token_refused(servers, admin, sts, writer_token):
    """A token valid for 3 s works, then is refused: the proxy's cache never outlives it."""
    short = impersonate(sts, writer_token, WRITER, lifetime=3)
    issued = time.time()
    gcs = storage(servers, short)
    gcs.check_bucket(OWN)
    time.sleep(max(0.0, issued + 4 - time.time()))
    with pytest.raises(AccessDenied, match="HTTP 401.*expired"):
        gcs.check_bucket(OWN)


def test_read_role_reads_but_does_not_write(servers, admin, sts, writer_token, tmp_path):
    admin.put_object(OWN, "a.txt", b"abc")
    gcs = storage(servers, impersonate(sts, writer_token, READER))
    assert gcs.download(OWN, "a.txt", str(tmp_path / "a.txt")).size == 3
    source = tmp_path / "source"
    source.write_bytes(b"xyz")
    with pytest.raises(AccessDenied, match="HTTP 403"):
        gcs.upload(str(source), OWN, "b.txt")
    with pytest.raises(AccessDenied, match="HTTP 403"):
        gcs.check_bucket(OTHER)
    assert admin.list_keys(OWN) == ["a.txt"]


def test_gcs_error_format_and_session_urls(servers, admin, writer_token):
    proxy = servers[1]
    bearer = {"Authorization": f"Bearer {writer_token}"}

    anonymous = requests.get(f"{proxy}/storage/v1/b/{OWN}/o", timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert anonymous.json()["error"]["errors"][0]["reason"] == "required"
    assert "Anonymous caller does not have storage.objects.list access" in anonymous.json()["error"]["message"]

    bogus = requests.get(f"{proxy}/storage/v1/b/{OWN}/o", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert bogus.status_code == 401
    assert bogus.json()["error"] == {
        "code": 401, "message": "Invalid Credentials",
        "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError",
                    "locationType": "header", "location": "Authorization"}],
    }  # fmt: skip

    forbidden = requests.get(f"{proxy}/storage/v1/b/{OTHER}/o", headers=bearer, timeout=10)
    assert forbidden.status_code == 403 and forbidden.json()["error"]["errors"][0]["reason"] == "forbidden"
    assert forbidden.json()["error"]["message"].startswith(
        f"{WRITER} does not have storage.objects.list access to the Google Cloud Storage bucket."
    )
    missing = requests.get(f"{proxy}/storage/v1/b/{MISSING}/o", headers=bearer, timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "The specified bucket does not exist."
    # objectAdmin holds no storage.buckets.* permission, nor any on the project.
    assert requests.get(f"{proxy}/storage/v1/b/{OWN}", headers=bearer, timeout=10).status_code == 403
    assert requests.get(f"{proxy}/storage/v1/b", params={"project": "p"}, headers=bearer, timeout=10).status_code == 403
    xml = requests.get(f"{proxy}/{OTHER}/a.txt", headers=bearer, timeout=10)
    assert xml.status_code == 403 and "<Code>AccessDenied</Code>" in xml.text

    # A resumable session begun with the token is at the proxy, and its URL alone lets the upload go on.
    begun = requests.post(
        f"{proxy}/upload/storage/v1/b/{OWN}/o",
        params={"uploadType": "resumable", "name": "s.txt"},
        json={},
        headers=bearer,
        timeout=10,
    )
    assert begun.status_code == 200 and begun.headers["Location"].startswith(f"{proxy}/upload/")
    done = requests.put(begun.headers["Location"], data=b"hello", headers={"Content-Range": "bytes 0-4/5"}, timeout=10)
    assert done.status_code == 200 and admin.get_object(OWN, "s.txt") == b"hello"


def test_proxy_log_has_no_tokens(servers, admin, writer_token):
    gcs = storage(servers, writer_token)
    gcs.check_bucket(OWN)
    with pytest.raises(AccessDenied):
        storage(servers, "ya29.local-bogus-token-for-the-log-test").check_bucket(OWN)
    begun = requests.post(
        f"{servers[1]}/upload/storage/v1/b/{OWN}/o",
        params={"uploadType": "resumable", "name": "l.txt"},
        json={},
        headers={"Authorization": f"Bearer {writer_token}"},
        timeout=10,
    )
    upload_id = begun.headers["Location"].split("upload_id=")[1]
    requests.put(begun.headers["Location"], data=b"x", headers={"Content-Range": "bytes 0-0/1"}, timeout=10)
    with open(servers[3]) as fh:
        log = fh.read()
    assert f"GET /storage/v1/b/{OWN}/o 200 principal=serviceAccount:{WRITER}" in log
    for secret in (writer_token, "ya29.local-bogus-token-for-the-log-test", upload_id):
        assert secret not in log


# --- the rules, without servers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path,query,needs",
    [
        ("GET", "/storage/v1/b/b1/o", "", [("b1", "storage.objects.list")]),
        ("GET", "/storage/v1/b/b1/o/dir%2Fx", "", [("b1", "storage.objects.get")]),
        ("DELETE", "/storage/v1/b/b1/o/x", "", [("b1", "storage.objects.delete")]),
        ("PATCH", "/storage/v1/b/b1/o/x", "", [("b1", "storage.objects.update")]),
        ("POST", "/storage/v1/b/b1/o/x/compose", "", [("b1", "storage.objects.create")]),
        (
            "POST",
            "/storage/v1/b/b1/o/x/rewriteTo/b/b2/o/y",
            "",
            [("b1", "storage.objects.get"), ("b2", "storage.objects.create")],
        ),
        ("POST", "/upload/storage/v1/b/b1/o", "uploadType=resumable", [("b1", "storage.objects.create")]),
        ("GET", "/download/storage/v1/b/b1/o/x", "alt=media", [("b1", "storage.objects.get")]),
        ("GET", "/storage/v1/b/b1", "", [("b1", "storage.buckets.get")]),
        ("DELETE", "/storage/v1/b/b1", "", [("b1", "storage.buckets.delete")]),
        ("GET", "/storage/v1/b", "project=p", [(None, "storage.buckets.list")]),
        ("POST", "/storage/v1/b", "project=p", [(None, "storage.buckets.create")]),
        ("GET", "/b1/dir/x", "", [("b1", "storage.objects.get")]),
        ("PUT", "/b1/x", "", [("b1", "storage.objects.create")]),
    ],
)
def test_routes(method, path, query, needs):
    assert route(method, path, query).needs == tuple(Need(bucket, permission) for bucket, permission in needs)


def test_session_urls_and_batch():
    assert route("PUT", "/upload/storage/v1/b/b1/o", "uploadType=resumable&upload_id=abc").session
    assert not route("POST", "/upload/storage/v1/b/b1/o", "uploadType=resumable").session
    assert route("POST", "/batch/storage/v1", "").refusal


def test_policy():
    policy = Policy({
        "serviceAccount:w@p": {"b1": "write", "b2": "read"},
        "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/*": {"b3": "read"},
    })  # fmt: skip
    assert policy.allows("serviceAccount:w@p", Need("b1", "storage.objects.create"))
    assert policy.allows("serviceAccount:w@p", Need("b2", "storage.objects.get"))
    assert not policy.allows("serviceAccount:w@p", Need("b2", "storage.objects.create"))
    assert not policy.allows("serviceAccount:w@p", Need("b1", "storage.buckets.get"))
    assert not policy.allows("serviceAccount:w@p", Need(None, "storage.buckets.list"))
    assert not policy.allows("serviceAccount:other@p", Need("b1", "storage.objects.get"))
    pool = "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool"
    assert policy.allows(f"{pool}/subject/user-42", Need("b3", "storage.objects.list"))
    assert not policy.allows(f"{pool}x/subject/user-42", Need("b3", "storage.objects.list"))
    with pytest.raises(ValueError, match="Unknown role 'owner'"):
        Policy({"serviceAccount:w@p": {"b1": "owner"}})


def test_parse_allow():
    assert parse_allow("principal://iam.googleapis.com/x/subject/u=b1:read") == (
        "principal://iam.googleapis.com/x/subject/u",
        "b1",
        "read",
    )
    assert parse_allow("serviceAccount:w@p=b1") == ("serviceAccount:w@p", "b1", "write")
    with pytest.raises(Exception, match="PRINCIPAL=BUCKET"):
        parse_allow("b1:read")


def test_token_server_down_is_503_not_401(servers):
    """A token that cannot be checked is not called invalid: 503, which clients retry."""
    server = gcs_auth_proxy.serve(servers[0].endpoint_url, f"http://127.0.0.1:{free_port()}", {})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/storage/v1/b/{OWN}/o"
    try:
        assert requests.get(url, timeout=10).status_code == 401  # anonymous: nothing to check
        answer = requests.get(url, headers={"Authorization": "Bearer some-token"}, timeout=10)
        assert answer.status_code == 503 and answer.json()["error"]["errors"][0]["reason"] == "backendError"
    finally:
        server.shutdown()
        server.server_close()

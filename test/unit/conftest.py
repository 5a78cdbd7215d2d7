"""A real moto S3 server on 127.0.0.1 for the whole test session (no in-process mocks).

``moto_s3`` is a server without IAM enforcement, reset before each test that uses it.
``moto_strict`` is a second server with IAM enforcement on: it knows one IAM user allowed ``s3:*``,
so tests can show that only the credentials given explicitly are used, and get real 403s; and one
allowed ``s3:*`` on its bucket only (which may not list the account's buckets).
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Optional

import boto3
import pytest

# The fixture modules that tests also import names from: their asserts get pytest's messages too
# (imported before pytest loads them as plugins, they would not be rewritten).
pytest.register_assert_rewrite("azure_fixtures", "backend_cases", "gcp_servers", "swift_fixtures")

MOTO_SERVER = os.path.join(os.path.dirname(sys.executable), "moto_server")
ADMIN_KEYS = {"aws_access_key_id": "admin-test-key", "aws_secret_access_key": "admin-test-secret"}
STRICT_BUCKET = "strict-bucket"
STRICT_KEY = "present.txt"


@dataclass
class MotoServer:
    endpoint_url: str
    process: subprocess.Popen

    def admin(self, service: str = "s3", **keys):
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name="us-east-1", **(keys or ADMIN_KEYS))

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"), timeout=10)


@dataclass
class StrictMoto(MotoServer):
    access_key_id: str = ""  # the IAM user's: the only keys this server accepts once set up
    secret_access_key: str = ""
    scoped_keys: tuple[str, str] = ("", "")  # the IAM user's allowed the bucket only
    bucket: str = STRICT_BUCKET
    key: str = STRICT_KEY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp_path_factory, name: str, extra_env: Optional[dict] = None) -> MotoServer:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(extra_env or {})
    log = tmp_path_factory.mktemp(name) / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    endpoint_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            # moto's own API: not an AWS action, so it uses none of a strict server's free calls.
            urllib.request.urlopen(f"{endpoint_url}/moto-api/data.json", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto_server did not start, see {log}") from None
            time.sleep(0.1)
    return MotoServer(endpoint_url, process)


def _stop(server: MotoServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    server = _start(tmp_path_factory, "moto")
    yield server
    _stop(server)


@pytest.fixture
def moto_s3(moto_server):
    moto_server.reset()
    return moto_server


# The calls the strict server lets through before it enforces IAM: exactly those of the set-up below
# (an unsigned or unknown call after that gets 403, and unsigned STS calls crash moto with a 500).
STRICT_FREE_CALLS = 8


@pytest.fixture(scope="session")
def moto_strict(tmp_path_factory):
    started = _start(tmp_path_factory, "moto-strict", {"INITIAL_NO_AUTH_ACTION_COUNT": str(STRICT_FREE_CALLS)})
    server = StrictMoto(started.endpoint_url, started.process)
    try:
        s3, iam = server.admin("s3"), server.admin("iam")
        s3.create_bucket(Bucket=STRICT_BUCKET)  # 1
        s3.put_object(Bucket=STRICT_BUCKET, Key=STRICT_KEY, Body=b"strict")  # 2
        iam.create_user(UserName="tester")  # 3
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="tester", PolicyName="s3", PolicyDocument=json.dumps(policy))  # 4
        key = iam.create_access_key(UserName="tester")["AccessKey"]  # 5
        server.access_key_id, server.secret_access_key = key["AccessKeyId"], key["SecretAccessKey"]
        iam.create_user(UserName="scoped")  # 6
        resources = [f"arn:aws:s3:::{STRICT_BUCKET}", f"arn:aws:s3:::{STRICT_BUCKET}/*"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": resources}]}
        iam.put_user_policy(UserName="scoped", PolicyName="s3", PolicyDocument=json.dumps(policy))  # 7
        key = iam.create_access_key(UserName="scoped")["AccessKey"]  # 8
        server.scoped_keys = (key["AccessKeyId"], key["SecretAccessKey"])
        yield server
    finally:
        _stop(server)

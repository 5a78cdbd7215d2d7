"""moto as a local AWS (S3 + STS + IAM) with IAM enforcement on, for the demo and the tests.

The first few IAM calls are free (``INITIAL_NO_AUTH_ACTION_COUNT``): they make an admin user with
an access key; everything after that is signed and checked, as on AWS. The role and users it makes
may list any bucket (so a missing bucket is told from a denied one) but read and write objects in
one bucket only.
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import boto3
import requests

import localgalaxy

HERE = os.path.dirname(os.path.abspath(__file__))
ACCOUNT = "123456789012"  # moto's default account
FREE_CALLS = 3  # create_user, create_access_key, put_user_policy for the admin


@dataclass
class AwsAdmin:
    endpoint_url: str
    access_key: str
    secret_key: str

    def client(self, service: str):
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def create_bucket(self, name: str) -> str:
        self.client("s3").create_bucket(Bucket=name)
        return name

    def one_bucket_policy(self, bucket: str) -> str:
        return json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    # AWS checks s3:ListBucket for HeadBucket; moto checks an action of its own, s3:HeadBucket
                    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:HeadBucket", "s3:GetBucketLocation"], "Resource": "arn:aws:s3:::*"},
                    {
                        "Effect": "Allow",
                        "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                        "Resource": f"arn:aws:s3:::{bucket}/*",
                    },
                ],
            }
        )

    def create_web_identity_role(self, name: str, bucket: str, issuer_host: str = "127.0.0.1") -> str:
        """A role that an OIDC identity may assume, allowed to use ``bucket`` only; returns its ARN."""
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{issuer_host}"},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                }
            ],
        }
        iam = self.client("iam")
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), MaxSessionDuration=43200)["Role"]["Arn"]
        iam.put_role_policy(RoleName=name, PolicyName="one-bucket", PolicyDocument=self.one_bucket_policy(bucket))
        return arn

    def create_bucket_user(self, name: str, bucket: str) -> tuple[str, str]:
        """An IAM user with a static key, allowed to use ``bucket`` only; returns (key id, secret)."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="one-bucket", PolicyDocument=self.one_bucket_policy(bucket))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]


def start(port: int, log_path: str, cwd: str, **start_kwargs) -> subprocess.Popen:
    command = [sys.executable, os.path.join(HERE, "moto_sts_server.py"), "-H", "127.0.0.1", "-p", str(port)]
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": str(FREE_CALLS)}
    return localgalaxy.start(command, log_path, cwd, env, **start_kwargs)


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto exited with code {process.returncode}")
        try:
            requests.get(f"{url}/moto-api/", timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"moto did not answer at {url} within {timeout} s")


def make_admin(url: str) -> AwsAdmin:
    """Spend the free calls on an admin user with an access key."""
    unchecked = AwsAdmin(url, "bootstrap", "bootstrap").client("iam")
    unchecked.create_user(UserName="admin")
    key = unchecked.create_access_key(UserName="admin")["AccessKey"]
    all_actions = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    unchecked.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(all_actions))
    return AwsAdmin(url, key["AccessKeyId"], key["SecretAccessKey"])

"""moto as a local AWS (S3 + STS + IAM) with IAM enforcement on, for the demo and the tests.

The first few IAM calls are free (``INITIAL_NO_AUTH_ACTION_COUNT``): they make an admin user with
an access key; everything after that is signed and checked, as on AWS. The role and users it makes
may list any bucket (so a missing bucket is told from a denied one) but read and write objects in
one bucket only. STS AssumeRoleWithWebIdentity checks the token as AWS does (moto_sts_server.py):
the role's trust policy names an IAM OpenID Connect provider for the token's issuer.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlparse

import boto3
import requests

from galaxy_cloud_storage_testing import localgalaxy
from galaxy_cloud_storage_testing.storage_servers import StorageAdmin, wait_until

ACCOUNT = "123456789012"  # moto's default account
FREE_CALLS = 3  # create_user, create_access_key, put_user_policy for the admin


@dataclass
class AwsAdmin(StorageAdmin):
    endpoint_url: str
    access_key: str
    secret_key: str
    provider = "aws"

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

    def plugin_settings(self) -> dict:
        return {"s3_endpoint_url": self.endpoint_url, "sts_endpoint_url": self.endpoint_url}

    def demo_admin(self) -> dict:
        return {"endpoint_url": self.endpoint_url, "access_key": self.access_key, "secret_key": self.secret_key}

    def put_object(self, bucket: str, key: str, data: bytes) -> None:
        self.client("s3").put_object(Bucket=bucket, Key=key, Body=data)

    def object_putter(self, bucket: str):
        s3 = self.client("s3")
        return lambda key, data: s3.put_object(Bucket=bucket, Key=key, Body=data)

    def get_object(self, bucket: str, key: str) -> bytes:
        s3 = self.client("s3")
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            raise KeyError(key) from None

    def delete_object(self, bucket: str, key: str) -> None:
        self.client("s3").delete_object(Bucket=bucket, Key=key)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def multipart_uploads(self, bucket: str) -> list[str]:
        """Keys with an unfinished multipart upload (hidden parts a failed upload would leave)."""
        return [u["Key"] for u in self.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

    def one_bucket_policy(self, bucket: str) -> str:
        return json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    # AWS checks s3:ListBucket for HeadBucket and listings; moto 5.2.6 checks actions of its
                    # own, named after the calls (s3:HeadBucket, s3:ListObjectsV2)
                    {
                        "Effect": "Allow",
                        "Action": [
                            "s3:ListBucket",
                            "s3:ListObjectsV2",
                            "s3:ListObjects",
                            "s3:HeadBucket",
                            "s3:GetBucketLocation",
                        ],
                        "Resource": "arn:aws:s3:::*",
                    },
                    # AWS checks s3:GetObject for a HEAD of an object and s3:PutObject for each call of a
                    # multipart upload; moto 5.2.6 checks some calls by their own names instead.
                    {
                        "Effect": "Allow",
                        "Action": [
                            "s3:GetObject",
                            "s3:HeadObject",
                            "s3:CreateMultipartUpload",
                            "s3:UploadPart",
                            "s3:CompleteMultipartUpload",
                            "s3:PutObject",
                            "s3:DeleteObject",
                            "s3:AbortMultipartUpload",
                            "s3:ListMultipartUploadParts",
                        ],
                        "Resource": f"arn:aws:s3:::{bucket}/*",
                    },
                ],
            }
        )

    def create_oidc_provider(self, issuer: str, client_id: str) -> str:
        """An IAM OpenID Connect provider for ``issuer`` with ``client_id`` as its audience (as an
        admin makes one on AWS); returns its ARN. The same one again is not an error."""
        iam = self.client("iam")
        parsed = urlparse(issuer)
        arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{parsed.netloc}{parsed.path}"
        if arn not in {p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]}:
            iam.create_open_id_connect_provider(Url=issuer, ClientIDList=[client_id], ThumbprintList=["0" * 40])
        return arn

    def create_web_identity_role(self, name: str, bucket: str, issuer: str, client_id: str) -> str:
        """A role that identities of ``issuer`` (tokens for ``client_id``) may assume, allowed to use
        ``bucket`` only; returns its ARN. Makes the IAM OpenID Connect provider too."""
        provider_arn = self.create_oidc_provider(issuer, client_id)
        audience_key = f"{urlparse(issuer).netloc}{urlparse(issuer).path}:aud"
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {audience_key: client_id}},
                }
            ],
        }
        iam = self.client("iam")
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), MaxSessionDuration=43200)[
            "Role"
        ]["Arn"]
        iam.put_role_policy(RoleName=name, PolicyName="one-bucket", PolicyDocument=self.one_bucket_policy(bucket))
        return arn

    def create_bucket_user(self, name: str, bucket: str) -> tuple[str, str]:
        """An IAM user with a static key, allowed to use ``bucket`` only; returns (key id, secret)."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="one-bucket", PolicyDocument=self.one_bucket_policy(bucket))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]


def start(
    port: int, log_path: str, cwd: str, web_identity_log: Optional[str] = None, **start_kwargs
) -> subprocess.Popen:
    """moto on 127.0.0.1:``port`` (see moto_sts_server.py); with ``web_identity_log``, a JSON line
    per AssumeRoleWithWebIdentity there (read it with ``web_identity_calls``)."""
    command = [sys.executable, "-m", "galaxy_cloud_storage_testing.moto_sts_server", "-H", "127.0.0.1", "-p", str(port)]
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": str(FREE_CALLS)}
    if web_identity_log:
        env["MOTO_STS_WEB_IDENTITY_LOG"] = web_identity_log
    return localgalaxy.start(command, log_path, cwd, env, **start_kwargs)


def web_identity_calls(web_identity_log: str) -> list[dict]:
    """The AssumeRoleWithWebIdentity calls moto has answered so far, oldest first."""
    if not os.path.exists(web_identity_log):
        return []
    with open(web_identity_log) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def issued_credentials(url: str) -> list[dict]:
    """Every temporary credential moto's STS has issued (access key id, secret, session token,
    session name), from moto's own state dump; an unsigned moto API call, not an AWS action."""
    response = requests.get(f"{url}/moto-api/data.json", timeout=30)
    response.raise_for_status()
    return response.json().get("sts", {}).get("AssumedRole", [])


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    wait_until(lambda: requests.get(f"{url}/moto-api/", timeout=2) is not None, process, f"moto at {url}", timeout)


def make_admin(url: str) -> AwsAdmin:
    """Spend the free calls on an admin user with an access key."""
    unchecked = AwsAdmin(url, "bootstrap", "bootstrap").client("iam")
    unchecked.create_user(UserName="admin")
    key = unchecked.create_access_key(UserName="admin")["AccessKey"]
    all_actions = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    unchecked.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(all_actions))
    return AwsAdmin(url, key["AccessKeyId"], key["SecretAccessKey"])

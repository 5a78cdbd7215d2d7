"""Invariant 2: no credential reaches a log, even with every logger at DEBUG (Galaxy's default)."""

import logging

import boto3
from botocore import UNSIGNED
from botocore.config import Config

import galaxy_cloud_storage.providers  # noqa: F401  (sets the botocore loggers' floor)
from galaxy_cloud_storage.config import AwsSettings
from galaxy_cloud_storage.providers.aws import (
    AwsCredentials,
    AwsStorage,
)

TOKEN = "eyJ.web-identity-token-that-must-not-be-logged.sig"
SECRET = "temporary-secret-that-must-not-be-logged"


def test_sts_and_s3_traffic_leave_no_credentials_in_debug_logs(moto_s3, caplog):
    caplog.set_level(logging.DEBUG)  # the root logger at DEBUG, as in Galaxy
    caplog.set_level(logging.DEBUG, logger="urllib3")  # (an embedded Galaxy earlier in the run quiets it)
    moto_s3.admin().create_bucket(Bucket="log-bucket")
    sts = boto3.session.Session().client(
        "sts", endpoint_url=moto_s3.endpoint_url, region_name="us-east-1", config=Config(signature_version=UNSIGNED)
    )
    issued = sts.assume_role_with_web_identity(
        RoleArn="arn:aws:iam::123456789012:role/any", RoleSessionName="galaxy-user", WebIdentityToken=TOKEN
    )["Credentials"]
    storage = AwsStorage(
        AwsSettings(s3_endpoint_url=moto_s3.endpoint_url),
        AwsCredentials(issued["AccessKeyId"], SECRET, issued["SessionToken"]),
    )
    storage.check_bucket("log-bucket")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (TOKEN, SECRET, issued["SecretAccessKey"], issued["SessionToken"]):
        assert secret not in logged
    assert any(record.name.startswith("urllib3") for record in caplog.records)  # DEBUG was on

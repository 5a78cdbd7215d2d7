"""Invariant 2: no credential reaches a log, even with every logger at DEBUG (Galaxy's default)."""

import logging
import logging.config

import pytest

from galaxy_cloud_storage.config import PluginConfig
from galaxy_cloud_storage.providers import cloud
from galaxy_cloud_storage.providers.aws import AwsAuthzConfig
from galaxy_cloud_storage.providers.aws.credentials import assume_role

TOKEN = "eyJ.web-identity-token-that-must-not-be-logged.sig"
WATCHED = ("urllib3", "botocore", "boto3", "s3transfer")


class Login:
    """The user's OIDC login, as the STS exchange sees it."""

    username = "user"

    def id_token(self) -> str:
        return TOKEN


@pytest.fixture
def galaxy_like_debug_logging(caplog):
    """What Galaxy's logging config can do after the plugin was imported: everything at DEBUG,
    botocore included. (Loggers an embedded Galaxy disabled earlier in the run are enabled again.)"""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "root": {"level": "DEBUG"},
            "loggers": {"botocore": {"level": "DEBUG"}},
        }
    )
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] in WATCHED:
            logger.disabled = False
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    yield caplog
    logging.getLogger("botocore").setLevel(logging.NOTSET)


def test_sts_and_s3_traffic_leave_no_credentials_in_debug_logs(moto_s3, galaxy_like_debug_logging):
    moto_s3.admin().create_bucket(Bucket="log-bucket")
    config = PluginConfig(
        providers={"aws": {"sts_endpoint_url": moto_s3.endpoint_url, "s3_endpoint_url": moto_s3.endpoint_url}}
    )
    credentials = assume_role(
        config.providers.aws, AwsAuthzConfig(role_arn="arn:aws:iam::123456789012:role/any"), Login()
    )
    backend = cloud("aws").storage(config.providers.aws, credentials, {})
    backend.check_bucket("log-bucket")

    logging.getLogger("gcs-debug-probe").debug("probe")  # a fresh logger: no earlier config touched it
    records = galaxy_like_debug_logging.records
    logged = "\n".join(record.getMessage() for record in records)
    for secret in (TOKEN, credentials.secret_access_key, credentials.session_token):
        assert secret not in logged
    assert any(record.getMessage() == "probe" for record in records)  # DEBUG records were captured
    assert logging.getLogger("botocore").getEffectiveLevel() >= logging.INFO  # ...and botocore's stayed out

"""Credentials travel to the transfer job as JSON (contracts.Delegation) and come back through
their cloud's credentials type: every cloud's credentials survive the trip, expiry included."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from galaxy_cloud_storage.contracts import Delegation
from galaxy_cloud_storage.providers.aws.storage import AwsCredentials
from galaxy_cloud_storage.providers.azure.storage import AzureCredentials
from galaxy_cloud_storage.providers.gcp.storage import GcpCredentials
from galaxy_cloud_storage.providers.openstack.storage import SwiftCredentials

EXPIRES = datetime(2026, 11, 22, 10, 30, tzinfo=timezone.utc) + timedelta(microseconds=5)

CREDENTIALS = [
    AwsCredentials("ASIAEXAMPLE", "secret-key", "session-token", EXPIRES),
    AwsCredentials("AKIAEXAMPLE", "secret-key"),
    AzureCredentials(access_token="bearer-token", expires_on=EXPIRES),
    AzureCredentials(sas_token="sv=2024&sig=abc"),
    GcpCredentials("ya29.access-token", EXPIRES),
    GcpCredentials("ya29.access-token"),
    SwiftCredentials("http://127.0.0.1:8080/v1/AUTH_test", "AUTH_tk123", EXPIRES),
]


@pytest.mark.parametrize("credentials", CREDENTIALS, ids=lambda c: f"{type(c).__name__}")
def test_round_trip_through_json(credentials):
    data = json.loads(
        Delegation(provider="any", settings={}, config={}, credentials=credentials.to_json()).model_dump_json()
    )["credentials"]
    assert type(credentials).from_json(data) == credentials


def test_dates_are_iso_8601():
    assert GcpCredentials("t", EXPIRES).to_json() == {"access_token": "t", "expiry": "2026-11-22T10:30:00.000005+00:00"}
    assert SwiftCredentials("u", "t").to_json()["expires"] is None


def test_missing_optional_fields_take_their_defaults():
    assert AzureCredentials.from_json({"sas_token": "sig"}) == AzureCredentials(sas_token="sig")

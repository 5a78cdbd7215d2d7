"""The per-provider schemas of a user's authorization record: each cloud's AuthzConfig
(galaxy_cloud_storage.providers.<cloud>)."""

import json

import pytest
from pydantic import ValidationError

from galaxy_cloud_storage.providers import clouds

PROVIDER_CONFIGS = {name: each.authz_config_model for name, each in clouds().items()}

ROLE_ARN = "arn:aws:iam::123456789012:role/galaxy"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "0f4b5a1e-3c2d-4e6f-8a9b-1c2d3e4f5a6b"
AUDIENCE = (
    "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/galaxy-pool/providers/galaxy-oidc"
)
SA_EMAIL = "galaxy-reader@my-project.iam.gserviceaccount.com"
SA_KEY = {
    "type": "service_account",
    "project_id": "my-project",
    "client_email": SA_EMAIL,
    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    "token_uri": "https://oauth2.googleapis.com/token",
}
HEX32 = "0123456789abcdef0123456789abcdef"

# what public_dict adds on its own: the fields with a default
DEFAULTS = {"aws": {"token_ttl": 3600}, "azure": {}, "gcp": {}, "openstack": {"project_domain_name": "Default"}}


def validate(provider, raw):
    return PROVIDER_CONFIGS[provider].model_validate(raw)


def problems(provider, raw) -> str:
    """The validation errors as the user reads them: location and message."""
    with pytest.raises(ValidationError) as e:
        validate(provider, raw)
    return "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.value.errors())


def test_every_provider_has_a_schema():
    assert set(PROVIDER_CONFIGS) == {"aws", "azure", "gcp", "openstack"}


@pytest.mark.parametrize(
    "provider, raw, mode",
    [
        ("aws", {"role_arn": ROLE_ARN}, "web_identity"),
        (
            "aws",
            {
                "role_arn": "arn:aws-us-gov:iam::123456789012:role/path/to/r",
                "token_ttl": 900,
                "region": "us-gov-west-1",
            },
            "web_identity",
        ),
        ("aws", {"role_arn": ROLE_ARN, "token_ttl": 43200}, "web_identity"),
        ("azure", {"tenant_id": TENANT, "client_id": CLIENT, "storage_account": "galaxydata01"}, "federated"),
        ("gcp", {"audience": AUDIENCE, "project": "my-project"}, "workload_identity"),
        ("gcp", {"audience": AUDIENCE, "project": "my-project", "service_account": SA_EMAIL}, "workload_identity"),
        ("openstack", {"identity_provider": "galaxy", "protocol": "openid", "project_name": "demo"}, "oidc_federation"),
        (
            "openstack",
            {"identity_provider": "galaxy", "protocol": "openid", "project_id": HEX32, "region": "RegionOne"},
            "oidc_federation",
        ),
    ],
)
def test_secretless(provider, raw, mode):
    config = validate(provider, raw)
    assert config.mode == mode
    assert config.needs_oidc_identity and not config.uses_stored_secret
    assert config.public_dict() == {**DEFAULTS[provider], **raw}
    assert config.secret_dict() == {}


@pytest.mark.parametrize(
    "provider, raw, mode, secret",
    [
        (
            "aws",
            {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG"},
            "static_key",
            "secret_access_key",
        ),
        (
            "azure",
            {"tenant_id": TENANT, "client_id": CLIENT, "storage_account": "galaxydata01", "client_secret": "s3cr3t~"},
            "client_secret",
            "client_secret",
        ),
        ("azure", {"storage_account": "galaxydata01", "sas_token": "sv=2022-11-02&ss=b&sig=abc"}, "sas", "sas_token"),
        (
            "gcp",
            {"project": "my-project", "service_account_key": json.dumps(SA_KEY)},
            "service_account_key",
            "service_account_key",
        ),
        (
            "openstack",
            {"application_credential_id": HEX32, "application_credential_secret": "s3cr3t", "project_name": "demo"},
            "application_credential",
            "application_credential_secret",
        ),
    ],
)
def test_stored_secret(provider, raw, mode, secret):
    config = validate(provider, raw)
    assert config.mode == mode
    assert config.uses_stored_secret and not config.needs_oidc_identity
    assert config.secret_dict() == {secret: raw[secret]}
    public = config.public_dict()
    assert secret not in public
    assert public == {**DEFAULTS[provider], **{k: v for k, v in raw.items() if k != secret}}


def test_whitespace_is_stripped():
    assert validate("aws", {"role_arn": f"  {ROLE_ARN}\n"}).role_arn == ROLE_ARN


AZ = {"tenant_id": TENANT, "client_id": CLIENT, "storage_account": "galaxydata01"}
GCP = {"audience": AUDIENCE, "project": "my-project"}
OS_FED = {"identity_provider": "galaxy", "protocol": "openid", "project_name": "demo"}
OS_APP = {"application_credential_id": HEX32, "application_credential_secret": "s3cr3t"}


def sa_key(**changes):
    return json.dumps({k: v for k, v in {**SA_KEY, **changes}.items() if v is not None})


@pytest.mark.parametrize(
    "provider, raw, field, message",
    [
        # unknown fields (endpoints above all: they are the admin's)
        ("aws", {"role_arn": ROLE_ARN, "endpoint_url": "https://evil.example"}, "endpoint_url", "Extra inputs"),
        ("azure", {**AZ, "blob_endpoint": "https://evil.example"}, "blob_endpoint", "Extra inputs"),
        ("gcp", {**GCP, "token_url": "https://evil.example"}, "token_url", "Extra inputs"),
        ("openstack", {**OS_FED, "keystone_url": "https://evil.example"}, "keystone_url", "Extra inputs"),
        # missing required fields
        ("aws", {}, "role_arn", "required"),
        ("aws", {"access_key_id": "AKIAIOSFODNN7EXAMPLE"}, "secret_access_key", "required"),
        ("aws", {"secret_access_key": "x"}, "access_key_id", "required"),
        ("azure", {"tenant_id": TENANT, "client_id": CLIENT}, "storage_account", "Field required"),
        ("azure", {"storage_account": "galaxydata01", "client_id": CLIENT}, "tenant_id", "required"),
        ("azure", {"storage_account": "galaxydata01", "client_secret": "x"}, "tenant_id, client_id", "required"),
        ("gcp", {"audience": AUDIENCE}, "project", "Field required"),
        ("gcp", {"project": "my-project", "service_account": SA_EMAIL}, "audience", "required"),
        ("openstack", {"project_name": "demo"}, "identity_provider, protocol", "required"),
        ("openstack", {"identity_provider": "galaxy", "protocol": "openid"}, "project_name or project_id", "required"),
        ("openstack", {"application_credential_id": HEX32}, "application_credential_secret", "required"),
        # wrong types
        ("aws", {"role_arn": ROLE_ARN, "token_ttl": "an hour"}, "token_ttl", "valid integer"),
        ("aws", {"role_arn": 123456789012}, "role_arn", "valid string"),
        ("azure", {**AZ, "storage_account": ["galaxydata01"]}, "storage_account", "valid string"),
        ("gcp", {**GCP, "project": 42}, "project", "valid string"),
        ("openstack", {**OS_FED, "project_name": {"name": "demo"}}, "project_name", "valid string"),
        # bad syntax
        ("aws", {"role_arn": "arn:aws:iam::12345:role/galaxy"}, "role_arn", "should match pattern"),
        ("aws", {"role_arn": "arn:aws:s3:::my-bucket"}, "role_arn", "should match pattern"),
        ("aws", {"role_arn": ROLE_ARN, "token_ttl": 899}, "token_ttl", "greater than or equal to 900"),
        ("aws", {"role_arn": ROLE_ARN, "token_ttl": 43201}, "token_ttl", "less than or equal to 43200"),
        ("aws", {"role_arn": ROLE_ARN, "region": "US East"}, "region", "should match pattern"),
        ("aws", {"access_key_id": "AKIA", "secret_access_key": "   "}, "secret_access_key", "at least 1 character"),
        ("azure", {**AZ, "tenant_id": "contoso.onmicrosoft.com"}, "tenant_id", "should match pattern"),
        ("azure", {**AZ, "client_id": CLIENT[:-1]}, "client_id", "should match pattern"),
        ("azure", {**AZ, "storage_account": "Galaxy_Data"}, "storage_account", "should match pattern"),
        ("azure", {**AZ, "storage_account": "ab"}, "storage_account", "should match pattern"),
        (
            "gcp",
            {
                **GCP,
                "audience": "https://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/prov",
            },
            "audience",
            "should match pattern",
        ),
        ("gcp", {**GCP, "service_account": "someone@gmail.com"}, "service_account", "should match pattern"),
        ("gcp", {**GCP, "project": "My Project"}, "project", "should match pattern"),
        ("gcp", {"project": "my-project", "service_account_key": "not json"}, "service_account_key", "JSON key file"),
        (
            "gcp",
            {"project": "my-project", "service_account_key": "[1, 2]"},
            "service_account_key",
            '"type": "service_account"',
        ),
        (
            "gcp",
            {"project": "my-project", "service_account_key": sa_key(type="authorized_user")},
            "service_account_key",
            '"type": "service_account"',
        ),
        (
            "gcp",
            {"project": "my-project", "service_account_key": sa_key(private_key=None)},
            "service_account_key",
            "lacks private_key",
        ),
        ("openstack", {**OS_FED, "project_name": None, "project_id": "demo"}, "project_id", "should match pattern"),
        (
            "openstack",
            {**OS_APP, "application_credential_id": "my-cred"},
            "application_credential_id",
            "should match pattern",
        ),
        # a secretless mode mixed with a secret one
        (
            "aws",
            {"role_arn": ROLE_ARN, "access_key_id": "AKIA", "secret_access_key": "x"},
            "role_arn, access_key_id, secret_access_key",
            "not both",
        ),
        ("aws", {"role_arn": ROLE_ARN, "secret_access_key": "x"}, "role_arn, secret_access_key", "not both"),
        ("azure", {**AZ, "sas_token": "sv=1"}, "tenant_id, client_id, sas_token", "not both"),
        ("azure", {**AZ, "client_secret": "x", "sas_token": "sv=1"}, "client_secret or sas_token", "not both"),
        ("gcp", {**GCP, "service_account_key": sa_key()}, "audience, service_account_key", "not both"),
        (
            "gcp",
            {"project": "my-project", "service_account": SA_EMAIL, "service_account_key": sa_key()},
            "service_account, service_account_key",
            "not both",
        ),
        ("openstack", {**OS_FED, **OS_APP}, "identity_provider, protocol, application_credential_id", "not both"),
    ],
)
def test_rejected(provider, raw, field, message):
    text = problems(provider, raw)
    assert field in text
    assert message in text

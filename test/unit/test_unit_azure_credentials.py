"""providers.azure.credentials.azure_credentials against the local Entra token endpoint over HTTPS
(galaxy_cloud_storage_testing/entra_token_server.py), which checks the id_token against a real issuer's JWKS
on 127.0.0.1."""

import hashlib
import logging
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from azure_fixtures import APP_SECRET, AUDIENCE, FEDERATED_APP, localgalaxy, SECRET_APP, SUBJECT, TENANT
from cryptography.hazmat.primitives.asymmetric import rsa
from galaxy import exceptions

from galaxy_cloud_storage.authz.errors import ReauthenticationRequired
from galaxy_cloud_storage.providers.azure import AzureAuthzConfig, AzureSettings
from galaxy_cloud_storage.providers.azure.credentials import azure_credentials

pytest_plugins = ["azure_fixtures"]  # Azurite, the Entra endpoint and the issuer, as fixtures

ACCOUNT = "devstoreaccount1"


@pytest.fixture
def settings(entra, certificates):
    return AzureSettings(authority_host=entra.authority_host, ca_bundle=certificates.ca)


def federated(**overrides) -> AzureAuthzConfig:
    return AzureAuthzConfig(
        **{"tenant_id": TENANT, "client_id": FEDERATED_APP, "storage_account": ACCOUNT, **overrides}
    )


def with_secret(secret=APP_SECRET, **overrides) -> AzureAuthzConfig:
    fields = {"tenant_id": TENANT, "client_id": SECRET_APP, "client_secret": secret, "storage_account": ACCOUNT}
    return AzureAuthzConfig(**{**fields, **overrides})


def never_called():
    pytest.fail("the id_token must not be asked for in this mode")


def test_federated_exchange(settings, entra, oidc_issuer, caplog):
    id_token = oidc_issuer.id_token()
    caplog.set_level(logging.DEBUG)
    before = len(entra.exchanges())
    credentials = azure_credentials(settings, federated(), lambda: id_token)
    claims = jwt.decode(credentials.access_token, options={"verify_signature": False})
    assert claims["aud"] == "https://storage.azure.com"
    assert claims["iss"] == f"https://sts.windows.net/{TENANT}/"
    assert claims["appid"] == FEDERATED_APP
    assert credentials.sas_token is None
    assert timedelta(minutes=55) < credentials.expires_on - datetime.now(timezone.utc) <= timedelta(hours=1)
    [exchange] = entra.exchanges()[before:]
    assert exchange["grant"] == "client_assertion" and exchange["outcome"] == "issued"
    assert (exchange["iss"], exchange["sub"], exchange["aud"]) == (oidc_issuer.url, SUBJECT, [AUDIENCE])
    assert exchange["assertion_sha256"] == hashlib.sha256(id_token.encode()).hexdigest()
    # Neither token in the logs, at any level, nor in the credentials' repr.
    for secret in (id_token, credentials.access_token):
        assert secret not in caplog.text
        assert secret not in repr(credentials)


def test_wrong_subject_names_the_federated_credential(settings, oidc_issuer):
    with pytest.raises(exceptions.ItemAccessibilityException, match="AADSTS70021.*issuer.*subject.*audience") as e:
        azure_credentials(settings, federated(), lambda: oidc_issuer.id_token(sub="someone-else"))
    assert e.value.status_code == 403


def test_wrong_audience(settings, oidc_issuer):
    with pytest.raises(exceptions.ItemAccessibilityException, match="AADSTS700212.*federated identity credential"):
        azure_credentials(settings, federated(), lambda: oidc_issuer.id_token(aud="api://something-else"))


def test_expired_assertion_asks_to_log_in_again(settings, oidc_issuer):
    with pytest.raises(
        ReauthenticationRequired, match="AADSTS700024: the login token has expired.*Log in to Galaxy again"
    ) as e:
        azure_credentials(settings, federated(), lambda: oidc_issuer.id_token(lifetime=-60))
    assert e.value.status_code == 401


def test_assertion_signed_by_another_key(settings, oidc_issuer):
    forged = oidc_issuer.id_token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(ReauthenticationRequired, match="AADSTS700027"):
        azure_credentials(settings, federated(), lambda: forged)


def test_unknown_app(settings, oidc_issuer):
    config = federated(client_id="44444444-5555-4666-8777-888888888888")
    with pytest.raises(exceptions.ItemAccessibilityException, match="AADSTS700016.*client_id 44444444"):
        azure_credentials(settings, config, oidc_issuer.id_token)


def test_client_secret_mode(settings, entra):
    before = len(entra.exchanges())
    credentials = azure_credentials(settings, with_secret(), never_called)
    assert jwt.decode(credentials.access_token, options={"verify_signature": False})["appid"] == SECRET_APP
    [exchange] = entra.exchanges()[before:]
    assert (exchange["grant"], exchange["outcome"]) == ("client_secret", "issued")
    assert APP_SECRET not in str(exchange)


def test_wrong_client_secret(settings):
    with pytest.raises(exceptions.ItemAccessibilityException, match="AADSTS7000215.*client secret") as e:
        azure_credentials(settings, with_secret("not-the-secret"), never_called)
    assert "not-the-secret" not in str(e.value)


def test_unknown_tenant_with_client_secret(settings):
    config = with_secret(tenant_id="55555555-6666-4777-8888-999999999999")
    with pytest.raises(exceptions.ItemAccessibilityException, match="tenant 55555555"):
        azure_credentials(settings, config, never_called)


def test_sas_mode_passes_the_sas_through():
    config = AzureAuthzConfig(sas_token="sv=2025-01-05&sig=abc", storage_account=ACCOUNT)
    # An unreachable authority: nothing is contacted.
    settings = AzureSettings(authority_host=f"https://127.0.0.1:{localgalaxy.free_port()}")
    credentials = azure_credentials(settings, config, never_called)
    assert credentials.sas_token == "sv=2025-01-05&sig=abc" and credentials.access_token is None


@pytest.mark.parametrize("config", [federated(), with_secret()], ids=["federated", "client_secret"])
def test_unreachable_authority(config, oidc_issuer):
    settings = AzureSettings(authority_host=f"https://127.0.0.1:{localgalaxy.free_port()}")
    with pytest.raises(exceptions.UpstreamProxyError, match="could not be reached"):
        azure_credentials(settings, config, oidc_issuer.id_token)


def test_untrusted_authority_certificate(entra, oidc_issuer):
    """Without the admin's ca_bundle the local CA is not trusted: no token is sent there."""
    settings = AzureSettings(authority_host=entra.authority_host)
    before = len(entra.exchanges())
    with pytest.raises(exceptions.UpstreamProxyError):
        azure_credentials(settings, federated(), oidc_issuer.id_token)
    assert entra.exchanges()[before:] == []


SERVER_IDENTITY = {
    "AZURE_CLIENT_ID": "99999999-9999-4999-8999-999999999999",
    "AZURE_CLIENT_SECRET": "server-secret",
    "AZURE_TENANT_ID": "99999999-9999-4999-8999-999999999998",
    "AZURE_AUTHORITY_HOST": "https://127.0.0.1:1",
    "AZURE_REGIONAL_AUTHORITY_NAME": "westus",
    "AZURE_FEDERATED_TOKEN_FILE": "/dev/null",
    "IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi/token",
    "MSI_ENDPOINT": "http://127.0.0.1:1/msi/token",
}


@pytest.mark.parametrize("config", [federated(), with_secret()], ids=["federated", "client_secret"])
def test_server_identity_in_environment_changes_nothing(monkeypatch, config, settings, entra, oidc_issuer):
    for name, value in SERVER_IDENTITY.items():
        monkeypatch.setenv(name, value)
    before = len(entra.exchanges())
    credentials = azure_credentials(settings, config, oidc_issuer.id_token)
    claims = jwt.decode(credentials.access_token, options={"verify_signature": False})
    assert (claims["tid"], claims["appid"]) == (TENANT, config.client_id)  # the record's, at the admin's authority
    [exchange] = entra.exchanges()[before:]
    assert exchange["client_id"] == config.client_id


def test_empty_id_token_is_refused(settings):
    with pytest.raises((ReauthenticationRequired, exceptions.ItemAccessibilityException)):
        azure_credentials(settings, federated(), lambda: "")

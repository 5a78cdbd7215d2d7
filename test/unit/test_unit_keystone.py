"""providers.openstack.credentials against a real Keystone 30 with a real Swift cluster behind it
(galaxy_cloud_storage_testing/keystone_aio.py): application credentials and OIDC federation give a token for the
project's Swift account, and that token moves bytes; what Keystone or Swift refuses is told apart.

The OIDC provider is played by the test (keystone_aio mints RS256 access tokens); the middleware in
front of Keystone validates them as mod_auth_openidc would, and Keystone's own mapping decides.
"""

import hashlib
import logging
import os
import time
import uuid

import pytest
from galaxy import exceptions

from galaxy_cloud_storage.authz.errors import ReauthenticationRequired
from galaxy_cloud_storage.providers.openstack import OpenStackAuthzConfig, OpenStackSettings
from galaxy_cloud_storage.providers.openstack.credentials import openstack_credentials
from galaxy_cloud_storage.providers.openstack.storage import SwiftCredentials, SwiftStorage
from galaxy_cloud_storage.providers.storage import AccessDenied, ObjectInfo
from galaxy_cloud_storage_testing import keystone_aio

MiB = 1024 * 1024


pytest_plugins = ["swift_fixtures"]


@pytest.fixture(scope="module")
def settings(keystone_swift) -> OpenStackSettings:
    return OpenStackSettings(**keystone_swift.plugin_settings())


def app_credential(keystone_swift, user: str, **kwargs) -> OpenStackAuthzConfig:
    account = keystone_swift.accounts[user]
    return OpenStackAuthzConfig(
        application_credential_id=account["application_credential_id"],
        application_credential_secret=account["application_credential_secret"],
        **kwargs,
    )


def federation(**kwargs) -> OpenStackAuthzConfig:
    kwargs.setdefault("project_name", "galaxy")
    return OpenStackAuthzConfig(identity_provider=keystone_aio.IDP, protocol=keystone_aio.PROTOCOL, **kwargs)


def no_token():
    raise AssertionError("the OIDC access token was asked for where none is needed")


def new_container(credentials: SwiftCredentials) -> str:
    """A container in the credentials' own account, made with them (members may)."""
    from swiftclient.client import Connection

    name = f"c-{uuid.uuid4().hex[:10]}"
    Connection(preauthurl=credentials.storage_url, preauthtoken=credentials.token, retries=0).put_container(name)
    return name


def round_trip(settings, credentials, tmp_path, size: int) -> None:
    """Upload ``size`` random bytes (as segments above 1 MiB) and read them back, unchanged."""
    storage = SwiftStorage(settings.model_copy(update={"segment_size": MiB}), credentials, {})
    container = new_container(credentials)
    source, copy = tmp_path / "source", tmp_path / "copy"
    source.write_bytes(os.urandom(size))
    assert storage.upload(str(source), container, "data/sample.bin").size == size
    assert storage.stat(container, "data/sample.bin") == ObjectInfo("data/sample.bin", size)
    assert storage.download(container, "data/sample.bin", str(copy)).size == size
    assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()


# --- application credentials (a secret in the vault) -----------------------------------------------


def test_application_credential_reaches_its_projects_account(keystone_swift, settings, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    credentials = openstack_credentials(settings, app_credential(keystone_swift, "alice"), no_token)
    assert credentials.storage_url == keystone_swift.storage_url("galaxy")  # from Keystone's catalog
    assert credentials.expires is not None and credentials.expires.timestamp() > time.time() + 1800
    round_trip(settings, credentials, tmp_path, 3 * MiB + 17)  # an SLO, its segments in the same account
    secret = keystone_swift.accounts["alice"]["application_credential_secret"]
    assert credentials.token not in caplog.text and secret not in caplog.text


def test_wrong_application_credential_secret(keystone_swift, settings):
    config = app_credential(keystone_swift, "alice").model_copy(
        update={"application_credential_secret": "not-the-secret"}
    )
    with pytest.raises(exceptions.ItemAccessibilityException, match="Keystone refused the application credential") as e:
        openstack_credentials(settings, config, no_token)
    assert "not-the-secret" not in str(e.value)


def test_another_projects_token_is_denied_by_swift(keystone_swift, settings):
    alice = openstack_credentials(settings, app_credential(keystone_swift, "alice"), no_token)
    bob = openstack_credentials(settings, app_credential(keystone_swift, "bob"), no_token)
    assert bob.storage_url == keystone_swift.storage_url("other")
    container = new_container(alice)
    with pytest.raises(AccessDenied, match="denied"):
        SwiftStorage(settings, SwiftCredentials(alice.storage_url, bob.token), {}).check_bucket(container)


def test_region_missing_from_the_catalog(keystone_swift, settings):
    with pytest.raises(exceptions.ItemAccessibilityException, match="no public object-store .* in region 'Nowhere'"):
        openstack_credentials(settings, app_credential(keystone_swift, "alice", region="Nowhere"), no_token)


# --- OIDC federation (the user's login, no secret) ---------------------------------------------------


def test_federation_scopes_the_login_to_the_project(keystone_swift, settings, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    access_token = keystone_swift.mint_access_token()
    credentials = openstack_credentials(settings, federation(), lambda: access_token)
    assert credentials.storage_url == keystone_swift.storage_url("galaxy")
    round_trip(settings, credentials, tmp_path, 2 * MiB)
    assert access_token not in caplog.text and credentials.token not in caplog.text


def test_federation_by_project_id(keystone_swift, settings):
    config = federation(project_name=None, project_id=keystone_swift.projects["galaxy"])
    credentials = openstack_credentials(settings, config, lambda: keystone_swift.mint_access_token())
    assert credentials.storage_url == keystone_swift.storage_url("galaxy")


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 600, "iat": int(time.time()) - 900},  # expired
        {"iss": "https://someone-else.invalid/"},  # not the identity provider Keystone trusts
    ],
    ids=["expired", "other-issuer"],
)
def test_federation_refused_login_asks_to_log_in_again(keystone_swift, settings, claims):
    with pytest.raises(
        ReauthenticationRequired, match=f"Keystone did not accept your login for identity provider '{keystone_aio.IDP}'"
    ):
        openstack_credentials(settings, federation(), lambda: keystone_swift.mint_access_token(**claims))


def test_federation_identity_the_mapping_does_not_admit(keystone_swift, settings):
    """Keystone's mapping admits only members of the group ADMITTED_GROUP."""
    with pytest.raises(ReauthenticationRequired, match="mapping may not admit your identity"):
        openstack_credentials(settings, federation(), lambda: keystone_swift.mint_access_token(groups=["staff"]))


def test_federation_to_a_project_without_a_role(keystone_swift, settings):
    """The login is fine, the project is not: the message says so, not "log in again"."""
    with pytest.raises(exceptions.ItemAccessibilityException, match="Keystone refused a token for project 'other'"):
        openstack_credentials(settings, federation(project_name="other"), lambda: keystone_swift.mint_access_token())

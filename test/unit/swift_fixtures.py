"""A real Swift cluster on 127.0.0.1 (galaxy_cloud_storage_testing/swift_aio.py), and one behind a real Keystone
(galaxy_cloud_storage_testing/keystone_aio.py), for the unit tests that need them.

Skips, saying how to install it, when the Swift virtualenv is missing. A test module takes the
fixtures with ``pytest_plugins = ["swift_fixtures"]``: one cluster for the whole session.
"""

import pytest

from galaxy_cloud_storage_testing import keystone_aio, swift_aio


def _started(start, tmp_path_factory, name: str):
    if not swift_aio.is_installed():
        pytest.skip(
            "Swift and Keystone are not installed: "
            f"python -m galaxy_cloud_storage_testing.swift_aio install (into {swift_aio.DEFAULT_VENV})"
        )
    return start(str(tmp_path_factory.mktemp(name)))


@pytest.fixture(scope="session")
def swift(tmp_path_factory):
    cluster = _started(swift_aio.start, tmp_path_factory, "swift")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def keystone_swift(tmp_path_factory) -> keystone_aio.Cluster:
    """A real Keystone and a Swift cluster that trusts its tokens (keystone_aio.py)."""
    cluster = _started(keystone_aio.start, tmp_path_factory, "keystone")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def swift_admin(swift) -> swift_aio.SwiftAdmin:
    return swift.admin()


def v1_token(swift, user: str, key: str):
    """(storage URL, token) of a tempauth user, straight from the cluster (not through the plugin)."""
    from swiftclient.client import get_auth_1_0

    return get_auth_1_0(swift.auth_url, user, key)

"""A real Swift cluster on 127.0.0.1 (scripts/swift_aio.py) for the unit tests that need one.

Skips, saying how to install it, when the Swift virtualenv is missing. A test module takes the
fixtures with ``pytest_plugins = ["swift_fixtures"]``: one cluster for the whole session.
"""

import pytest
import swift_aio


@pytest.fixture(scope="session")
def swift(tmp_path_factory):
    if not swift_aio.is_installed():
        pytest.skip(f"Swift is not installed: python scripts/swift_aio.py install (into {swift_aio.DEFAULT_VENV})")
    cluster = swift_aio.start(str(tmp_path_factory.mktemp("swift")))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def swift_admin(swift) -> swift_aio.SwiftAdmin:
    return swift.admin()


def v1_token(swift, user: str, key: str):
    """(storage URL, token) of a tempauth user, straight from the cluster (not through the plugin)."""
    from swiftclient.client import get_auth_1_0

    return get_auth_1_0(swift.auth_url, user, key)

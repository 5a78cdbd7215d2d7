"""browsing.RecentBackends: a user's backend for an authorization, reused for a short while."""

from datetime import datetime

from galaxy_cloud_storage.browsing import RecentBackends
from galaxy_cloud_storage.model import CloudAuthz


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def record(authz_id=1, updated=datetime(2026, 12, 1, 12)):
    """A record as the manager has it (the real model: a misnamed attribute fails here)."""
    return CloudAuthz(id=authz_id, update_time=updated)


def counting_builder():
    built = []

    def build():
        built.append(object())
        return built[-1]

    return build, built


def test_a_backend_is_reused_until_its_time_is_up():
    clock, (build, built) = Clock(), counting_builder()
    recent = RecentBackends(ttl=120, clock=clock)
    first = recent.get(7, record(), build)
    clock.now += 119
    assert recent.get(7, record(), build) is first
    clock.now += 2
    assert recent.get(7, record(), build) is not first
    assert len(built) == 2


def test_another_user_another_record_or_a_changed_record_builds_anew():
    build, built = counting_builder()
    recent = RecentBackends(clock=Clock())
    first = recent.get(7, record(), build)
    assert recent.get(8, record(), build) is not first
    assert recent.get(7, record(authz_id=2), build) is not first
    assert recent.get(7, record(updated=datetime(2026, 12, 1, 13)), build) is not first
    assert recent.get(7, record(), build) is first
    assert len(built) == 4


def test_the_least_recently_used_goes_first():
    build, built = counting_builder()
    recent = RecentBackends(size=2, clock=Clock())
    one = recent.get(1, record(), build)
    recent.get(2, record(), build)
    assert recent.get(1, record(), build) is one  # 1 is now the most recent
    recent.get(3, record(), build)  # 2 goes
    assert recent.get(1, record(), build) is one
    recent.get(2, record(), build)
    assert len(built) == 4


def test_a_failed_build_keeps_nothing():
    recent = RecentBackends(clock=Clock())

    def refused():
        raise PermissionError("denied")

    for _ in range(2):
        try:
            recent.get(1, record(), refused)
        except PermissionError:
            pass
    build, built = counting_builder()
    recent.get(1, record(), build)
    assert len(built) == 1

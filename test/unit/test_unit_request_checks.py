"""The checks on a request's lists do work linear in their length, at the largest length allowed.

Counted, not timed: every key is a ``CountingKey``, which counts the comparisons made with it. A
quadratic check of 10,000 keys (``list.count`` per key, ``in`` a list) makes tens of millions; a
linear one a few per key. Where the names compared are made inside the code (the date suffix), a
large n is set against a small n instead: CPU time grows ten-fold for ten times the names when
the work is linear, a hundred-fold when it is quadratic.
"""

import time

from galaxy_cloud_storage.contracts import SendItem, SendManifest
from galaxy_cloud_storage.manager import repeated, unique_object_names
from galaxy_cloud_storage.providers.aws import S3NameRules
from galaxy_cloud_storage.providers.azure import AzureNameRules
from galaxy_cloud_storage.providers.storage import ObjectInfo
from galaxy_cloud_storage.schema import CloudStorageGetPayload
from galaxy_cloud_storage.transfer import job as transfer_job

LARGEST = CloudStorageGetPayload.model_fields["objects"].metadata[1].max_length
COMPARISONS_PER_KEY = 3


class CountingKey(str):
    comparisons = 0

    def __eq__(self, other):
        CountingKey.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def counting_keys(n: int, prefix: str = "reads/sample") -> list[CountingKey]:
    return [CountingKey(f"{prefix}-{i:05d}.fastq.gz") for i in range(n)]


def comparisons(work) -> int:
    CountingKey.comparisons = 0
    work()
    return CountingKey.comparisons


def test_the_largest_request_is_what_the_schema_allows():
    assert LARGEST == 10_000


def test_repeated_keys_are_found_in_one_pass():
    keys = counting_keys(LARGEST - 1)
    keys.append(CountingKey(keys[1234]))  # one key twice
    found = []
    assert comparisons(lambda: found.extend(repeated(keys))) <= COMPARISONS_PER_KEY * LARGEST
    assert found == [keys[1234]]


def test_every_key_repeated_is_still_linear():
    keys = counting_keys(LARGEST // 2) * 2
    assert comparisons(lambda: repeated(keys)) <= COMPARISONS_PER_KEY * LARGEST


def test_object_names_of_a_large_send_in_one_pass():
    # The worst case of the old API's rule: every name taken in the bucket and given twice.
    wanted = counting_keys(LARGEST // 2) * 2
    taken = set(wanted)
    names = []
    work = comparisons(lambda: names.extend(unique_object_names(wanted, taken, "_261201_101500", list(range(LARGEST)))))
    assert work <= COMPARISONS_PER_KEY * LARGEST
    assert len(set(names)) == LARGEST
    assert (
        names[0] == f"{wanted[0]}_261201_101500" and names[LARGEST // 2] == f"{wanted[0]}_261201_101500_{LARGEST // 2}"
    )


def cpu_seconds(work) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def test_object_names_grow_linearly_with_the_request():
    def naming(n: int):
        wanted = [f"reads/sample-{i:05d}.fastq.gz" for i in range(n // 2)] * 2
        return lambda: unique_object_names(wanted, set(wanted), "_261201_101500", list(range(n)))

    ratio = cpu_seconds(naming(LARGEST)) / cpu_seconds(naming(LARGEST // 10))
    assert ratio < 40, f"10x the names cost {ratio:.0f}x the time"


def test_name_rules_cost_the_same_per_key_at_any_length():
    for rules in (S3NameRules(), AzureNameRules()):
        keys = counting_keys(LARGEST)
        assert (
            comparisons(lambda rules=rules, keys=keys: [rules.key_problem(key) for key in keys])
            <= COMPARISONS_PER_KEY * LARGEST
        )


class AllThereBackend:
    """In-process stand-in: every object "appeared since the request" but the last, and nothing
    is uploaded (only the job's filtering is measured here)."""

    def stat_many(self, bucket, keys):
        return [ObjectInfo(key, 1) for key in keys[:-1]] + [None]


def test_send_job_filters_appeared_objects_in_one_pass(monkeypatch, capsys):
    sent = []
    monkeypatch.setattr(transfer_job, "send_files", lambda backend, bucket, items, **_: sent.extend(items) or [])
    keys = counting_keys(LARGEST)
    manifest = SendManifest.model_construct(
        bucket="b", items=[SendItem(f"/data/{i}", key) for i, key in enumerate(keys)]
    )

    work = comparisons(lambda: transfer_job.run_send(AllThereBackend(), manifest))

    assert work <= COMPARISONS_PER_KEY * LARGEST
    assert [item.key for item in sent] == [keys[-1]]
    assert f"{LARGEST - 1} of {LARGEST - 1} objects failed" in capsys.readouterr().err

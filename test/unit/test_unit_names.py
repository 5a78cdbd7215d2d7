"""Each cloud's naming rules (providers.<cloud>.*NameRules on providers.names), at their edges:
invariant 10's first half.

The second half, that a name which passes reaches exactly that object on the real servers, is in
the transfer suite (test_cloud_transfers.py) and the backend tests.
"""

import pytest

from galaxy_cloud_storage.providers.aws import S3NameRules
from galaxy_cloud_storage.providers.azure import AzureNameRules
from galaxy_cloud_storage.providers.gcp import GcsNameRules
from galaxy_cloud_storage.providers.names import InvalidName
from galaxy_cloud_storage.providers.openstack import SwiftNameRules

S3, GCS, AZURE, SWIFT = S3NameRules(), GcsNameRules(), AzureNameRules(), SwiftNameRules()
ALL = [S3, GCS, AZURE, SWIFT]


def refused(rules, bucket: str) -> str:
    with pytest.raises(InvalidName) as e:
        rules.check_bucket(bucket)
    return str(e.value)


# -- buckets and containers ---------------------------------------------------------------------


@pytest.mark.parametrize("rules", [S3, GCS, AZURE])
def test_dns_style_names_are_3_to_63_characters(rules):
    rules.check_bucket("abc")
    rules.check_bucket("a" * 63)
    assert "3 to 63" in refused(rules, "ab")
    assert "3 to 63" in refused(rules, "a" * 64)


@pytest.mark.parametrize("rules", ALL)
@pytest.mark.parametrize("name", [".", ".."])
def test_dot_and_dot_dot_are_never_buckets(rules, name):
    refused(rules, name)


@pytest.mark.parametrize("rules", [S3, GCS, AZURE])
@pytest.mark.parametrize(
    "name", ["a?b", "a#bc", "a%bc", "a\\bc", "a/bc", "UPPER", "r\u00e9sum\u00e9", "a b c", "a\x00bc"]
)
def test_characters_outside_the_rules(rules, name):
    assert "may hold only" in refused(rules, name)


# Each cloud's own edges: names it accepts, and names it refuses with a word of the reason.
EDGES = {
    "s3": (
        S3,
        ["my.lab.data", "lab-data-2026", "a-b", "123"],
        [
            ("arn:aws:s3:us-west-2:123456789012:accesspoint/reports", "ARN"),
            ("arn:aws:s3-object-lambda:us-east-1:123456789012:accesspoint/x", "ARN"),
            ("192.168.5.4", "IP address"),
            ("my..bucket", "two periods"),
            ("my.-bucket", "next to a hyphen"),
            ("-bucket", "begin and end"),
            ("bucket.", "begin and end"),
            ("xn--bucket", "xn--"),
            ("reports-abc123-s3alias", "-s3alias"),
            ("reports--ol-s3", "--ol-s3"),
            ("ab_c", "may hold only"),
        ],
    ),
    "gcs": (
        GCS,
        ["lab_data", "lab-data", "a.b.c", "x" * 63 + "." + "y" * 63],
        [
            ("x" * 64 + ".y", "at most 63"),
            (".".join(["x" * 60] * 4), "3 to 222"),
            ("goog-data", "goog"),
            ("my-google-data", "google"),
            ("my-g00gle-data", "google"),
            ("10.0.0.1", "IP address"),
            ("_lab", "begin and end"),
        ],
    ),
    "azure": (
        AZURE,
        ["lab-data", "a1b", "$root", "$web"],
        [
            ("lab--data", "two hyphens"),
            ("-lab", "begin and end"),
            ("lab.data", "may hold only"),
            ("lab_data", "may hold only"),
            ("$logs-x", "may hold only"),
        ],
    ),
    "swift": (
        SWIFT,
        ["Lab Data", "lab.data", "r\u00e9sum\u00e9", "a?b#c", "x" * 256],
        [
            ("x" * 257, "256 bytes"),
            ("\u00e9" * 129, "256 bytes"),  # 258 bytes in UTF-8
            ("a/b", "'/'"),
            ("a\x00b", "control character"),
            ("", "empty"),
        ],
    ),
}


@pytest.mark.parametrize("cloud", EDGES)
def test_each_clouds_own_bucket_edges(cloud):
    rules, accepted, refusals = EDGES[cloud]
    for good in accepted:
        rules.check_bucket(good)
    for bad, word in refusals:
        assert word in refused(rules, bad), (bad, word)


@pytest.mark.parametrize("rules", ALL)
def test_a_lone_surrogate_is_no_name(rules):
    assert "Unicode" in refused(rules, "ab\ud800c")
    assert "Unicode" in rules.key_problem("a\udfffb")


# -- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rules", ALL)
def test_the_longest_key_is_1024_bytes_of_utf8(rules):
    assert rules.key_problem("k" * 1024) is None
    assert "1024 bytes" in rules.key_problem("k" * 1025)
    assert rules.key_problem("\u00e9" * 512) is None  # 1024 bytes
    assert "1024 bytes" in rules.key_problem("\u00e9" * 513)
    assert "1024 bytes" in rules.key_problem("\U0001f9ec" * 257)  # 4 bytes each


@pytest.mark.parametrize("rules", ALL)
@pytest.mark.parametrize("key", ["a\x00b", "line\nbreak", "tab\there", "del\x7f", "c1\x85"])
def test_control_characters_are_refused_everywhere(rules, key):
    assert "control character" in rules.key_problem(key)


@pytest.mark.parametrize("rules", ALL)
@pytest.mark.parametrize(
    "key", ["peaks/rep1.bed", "with space.txt", "unicod\u00e9/r\u00e9sum\u00e9.tsv", "a?b#c%d", "x" * 1024]
)
def test_ordinary_keys_pass_everywhere(rules, key):
    assert rules.key_problem(key) is None


@pytest.mark.parametrize("rules", ALL)
def test_an_empty_key_is_refused(rules):
    assert "empty" in rules.key_problem("")


@pytest.mark.parametrize("key", ["x/../rep1.bed", "../other/k", "./a", "a/./b", "a/..", ".."])
def test_dot_segments_are_refused_where_http_would_resolve_them(key):
    for rules in (AZURE, SWIFT):
        assert "'.' or '..' path segment" in rules.key_problem(key)
    assert S3.key_problem(key) is None  # S3 holds such keys, and botocore sends them as they are


def test_gcs_keys():
    assert GCS.key_problem("x/../rep1.bed") is None  # the whole name is one encoded path segment
    assert GCS.key_problem("../escape.txt") is None
    for key in (".", ".."):
        assert "not object names" in GCS.key_problem(key)
    assert "reserved" in GCS.key_problem(".well-known/acme-challenge/token")


def test_azure_keys():
    assert "end with a period" in AZURE.key_problem("results.")
    assert "end with a period" in AZURE.key_problem("run1./reads.fq")
    assert "end with '/'" in AZURE.key_problem("folder/")
    assert "254 path segments" in AZURE.key_problem("/".join(["a"] * 255))
    assert AZURE.key_problem("/".join(["a"] * 254)) is None
    assert AZURE.key_problem(".hidden") is None  # a leading period is fine


def test_s3_keys_may_be_what_s3_holds():
    for key in ("../escape.txt", "/leading-slash.txt", "folder/", "a//b", "trailing."):
        assert S3.key_problem(key) is None


def test_messages_name_the_cloud_and_do_not_echo_control_characters():
    message = AZURE.key_problem("x\x00y")
    assert "Azure Blob Storage" in message and "\x00" not in message and "\\x00" in message
    assert refused(S3, "x" * 500).count("x") < 100  # a long name is shortened in the message


@pytest.mark.parametrize("rules", ALL)
@pytest.mark.parametrize("prefix", ["folder/", "runs/run-7/", "a/..", "results.", "deep/er/"])
def test_a_folders_prefix_may_end_where_a_key_may_not(rules, prefix):
    assert rules.prefix_problem(prefix) is None


@pytest.mark.parametrize("rules", ALL)
@pytest.mark.parametrize("prefix", ["tab\there/", "a\x00"])
def test_a_prefix_no_key_can_begin_with_is_refused(rules, prefix):
    assert "can begin with" in rules.prefix_problem(prefix)


def test_a_prefix_with_a_dot_segment_is_refused_where_keys_with_one_are():
    for rules in (AZURE, SWIFT):
        assert "'.' or '..' path segment" in rules.prefix_problem("x/../")
    assert S3.prefix_problem("x/../") is None

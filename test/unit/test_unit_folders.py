"""folders.py: which objects of a folder a get takes, element identifiers, pairing, and the keys a
collection's elements are sent to."""

import os

import pytest
import yaml
from galaxy.model.dataset_collections import auto_pairing

from galaxy_cloud_storage.folders import (
    element_key,
    FolderError,
    identifier_for_key,
    is_folder_marker,
    key_for_identifier,
    Pair,
    pair_keys,
    selected,
)

HOSTILE_KEYS = [
    "plain.txt",
    "a/b/c.fastq.gz",
    "50%/done",
    "%2F already escaped",
    "__object__",
    "x__object__y/__object__",
    "tab\there/and\nnewline\x7f",
    "//lead//and/trail/",
    "\u00fcnic\u00f8de/\U0001f9ec.txt",
    "%5F_object__",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_identifiers_hold_no_slash_control_or_reserved_word_and_map_back(key):
    identifier = identifier_for_key(key)
    assert "/" not in identifier and "__object__" not in identifier
    assert not any(ord(char) < 0x20 or ord(char) == 0x7F for char in identifier)
    assert key_for_identifier(identifier) == key


def test_identifiers_are_distinct_for_distinct_keys():
    assert len({identifier_for_key(key) for key in HOSTILE_KEYS}) == len(HOSTILE_KEYS)


def test_an_identifier_made_in_galaxy_keeps_its_other_percent_signs():
    assert key_for_identifier("50% done %41") == "50% done %41"
    assert element_key(["my%2Frun", "s1", "forward"]) == "my/run/s1/forward"


@pytest.mark.parametrize(
    "key,size,marker", [("run/", 0, True), ("run/", 3, False), ("run", 0, False), ("a/b/", 0, True)]
)
def test_folder_markers_are_empty_keys_ending_in_a_slash(key, size, marker):
    assert is_folder_marker(key, size) is marker


@pytest.mark.parametrize(
    "relative,include,exclude,taken",
    [
        ("a.fastq.gz", [], [], True),
        ("deep/er/a.fastq.gz", ["*.fastq.gz"], [], True),
        ("a.bam", ["*.fastq.gz"], [], False),
        ("sample_1/a.txt", ["sample_*/*"], [], True),
        ("other/a.txt", ["sample_*/*"], [], False),
        ("skip/a.bed", ["*.bed"], ["skip/*"], False),
        ("A.BED", ["*.bed"], [], False),  # case sensitive, as keys are
        ("a.bed", ["*.txt", "*.bed"], [], True),
    ],
)
def test_include_and_exclude_are_globs_on_the_relative_key(relative, include, exclude, taken):
    assert selected(relative, include, exclude) is taken


def galaxy_spec_cases():
    """Galaxy's own pairing examples (auto_pairing_spec.yml), which its upload dialog follows."""
    with open(os.path.join(os.path.dirname(auto_pairing.__file__), "auto_pairing_spec.yml")) as fh:
        cases = yaml.safe_load(fh)
    return [case for case in cases if case.get("paired") and not case.get("unpaired")]


@pytest.mark.parametrize("case", galaxy_spec_cases(), ids=lambda case: case["doc"])
def test_pairs_as_galaxy_pairs_them(case):
    pairs = pair_keys(case["inputs"])
    assert {pair.name: {"forward": pair.forward, "reverse": pair.reverse} for pair in pairs} == case["paired"]


def test_pairs_in_order_of_their_first_read_with_illumina_lane_names():
    keys = ["b/s2_R1_001.fastq.gz", "a/s1_R2_001.fastq.gz", "a/s1_R1_001.fastq.gz", "b/s2_R2_001.fastq.gz"]
    assert pair_keys(keys) == [
        Pair("s2_001", "b/s2_R1_001.fastq.gz", "b/s2_R2_001.fastq.gz"),
        Pair("s1_001", "a/s1_R1_001.fastq.gz", "a/s1_R2_001.fastq.gz"),
    ]


def test_the_layout_a_send_writes_pairs_back_by_its_folders():
    keys = ["s1/forward", "s1/reverse", "x/y/forward", "x/y/reverse"]
    assert pair_keys(keys) == [Pair("s1", "s1/forward", "s1/reverse"), Pair("x%2Fy", "x/y/forward", "x/y/reverse")]


@pytest.mark.parametrize(
    "keys,named",
    [
        (["s1_R1.fq", "s1_R2.fq", "s2_R1.fq"], ["s2_R1.fq", "no mate"]),
        (["s1/forward", "s1/reverse", "s2/forward"], ["s2/forward", "no mate"]),
        (["notes.txt", "s1_R1.fq", "s1_R2.fq"], ["notes.txt"]),
        (["a/s_R1.fq", "b/s_R1.fq", "a/s_R2.fq"], ["b/s_R1.fq", "ambiguous"]),
        (["a/s_R1.fq", "a/s_R2.fq", "b/s_R1.fq", "b/s_R2.fq"], ["ambiguous"]),
    ],
)
def test_a_read_without_a_mate_or_with_a_rival_is_named(keys, named):
    with pytest.raises(FolderError) as raised:
        pair_keys(keys)
    for word in named:
        assert word in str(raised.value)


def test_a_read_without_a_mate_is_named_by_its_full_key():
    with pytest.raises(FolderError, match="'runs/7/s2_R1.fq'"):
        pair_keys(["s1_R1.fq", "s1_R2.fq", "s2_R1.fq"], prefix="runs/7/")

"""listing.PageTokens: a page token carries the cloud's continuation, for its own listing only."""

import dataclasses

import pytest

from galaxy_cloud_storage.listing import InvalidPageToken, Listing, PageTokens

LISTING = Listing(user_id=1, authz_id=2, bucket="lab", prefix="runs/", delimiter="/")
CONTINUATIONS = ["1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=", "runs/r\u00e9sum\u00e9/", "a.b.c", ""]


@pytest.mark.parametrize("continuation", CONTINUATIONS)
def test_a_token_gives_back_its_continuation(continuation):
    tokens = PageTokens("secret")
    token = tokens.issue(LISTING, continuation)
    assert tokens.continuation(LISTING, token) == continuation


def test_the_last_page_has_no_token_and_no_token_is_the_first_page():
    tokens = PageTokens("secret")
    assert tokens.issue(LISTING, None) is None
    assert tokens.continuation(LISTING, None) is None


@pytest.mark.parametrize(
    "change", [{"user_id": 3}, {"authz_id": 3}, {"bucket": "other"}, {"prefix": "runs/x"}, {"delimiter": None}]
)
def test_a_token_of_another_listing_is_refused(change):
    tokens = PageTokens("secret")
    token = tokens.issue(LISTING, "marker")
    with pytest.raises(InvalidPageToken, match="page_token"):
        tokens.continuation(dataclasses.replace(LISTING, **change), token)


def test_a_token_of_another_galaxy_or_made_by_hand_is_refused():
    token = PageTokens("another site's id_secret").issue(LISTING, "marker")
    forged_body = PageTokens("secret").issue(LISTING, "../other").split(".")[0]
    for given in [token, f"{forged_body}.{token.split('.')[1]}", "bWFya2Vy", "", "..", "a.b.c"]:
        with pytest.raises(InvalidPageToken):
            PageTokens("secret").continuation(LISTING, given)


def test_a_token_hides_nothing_sensitive_but_is_opaque():
    token = PageTokens("secret").issue(LISTING, "marker")
    assert "secret" not in token and "marker" not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")

"""Page tokens of the object listing: the cloud's own continuation, sealed to the listing it
continues.

A token carries the continuation the cloud gave for the next page (so a page costs one listing
call, wherever it is) and an HMAC over that and the listing it belongs to: the user, the
authorization, the bucket, the prefix and the delimiter. A token of another listing, or one made
or changed by hand, is refused, so the only continuations that reach a cloud are its own. The key
is derived from Galaxy's ``id_secret``, which every Galaxy process of a site shares: a token works
on whichever web worker the next request reaches. The limit is not sealed: a client may change it
between pages.
"""

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import astuple, dataclass
from typing import Optional

TOKEN_PURPOSE = b"galaxy-cloud-storage object listing page token"


class InvalidPageToken(ValueError):
    pass


@dataclass(frozen=True)
class Listing:
    """What a page token is for."""

    user_id: int
    authz_id: int
    bucket: str
    prefix: str
    delimiter: Optional[str]


class PageTokens:
    def __init__(self, id_secret: str):
        self._key = hmac.new(id_secret.encode(), TOKEN_PURPOSE, hashlib.sha256).digest()

    def issue(self, listing: Listing, continuation: Optional[str]) -> Optional[str]:
        if continuation is None:
            return None
        body = _b64encode(json.dumps(continuation).encode())
        return f"{body}.{self._seal(listing, body)}"

    def continuation(self, listing: Listing, token: Optional[str]) -> Optional[str]:
        """The cloud's continuation in ``token``; InvalidPageToken unless this listing issued it."""
        if token is None:
            return None
        body, _, seal = token.partition(".")
        if not hmac.compare_digest(seal.encode(), self._seal(listing, body).encode()):
            raise InvalidPageToken(
                "page_token: not a token of this listing; pass the next_page_token of the previous page, "
                "with the same bucket, prefix and delimiter"
            )
        try:
            continuation = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError) as e:  # sealed by us, so not expected
            raise InvalidPageToken("page_token: cannot be read") from e
        if not isinstance(continuation, str):
            raise InvalidPageToken("page_token: cannot be read")
        return continuation

    def _seal(self, listing: Listing, body: str) -> str:
        message = json.dumps([*astuple(listing), body]).encode()
        return _b64encode(hmac.new(self._key, message, hashlib.sha256).digest())


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")

"""Google Cloud Storage's naming rules, checked before any call (invariant 10); what every cloud's rules
share is in providers/names.py."""

import re
from typing import Iterable

from ..names import NameRules


class GcsNameRules(NameRules):
    """Google Cloud Storage's bucket and object naming rules (cloud.google.com/storage/docs,
    "Bucket names" and "Object names")."""

    cloud = "Google Cloud Storage"

    def bucket_problems(self, name: str) -> Iterable[str]:
        # Names with periods may be up to 222 characters long, each period-separated part up to 63.
        dotted = "." in name
        words = "lowercase letters, digits, hyphens, underscores and periods"
        yield from self.dns_name_problems(name, 222 if dotted else 63, "a-z0-9._-", words)
        if dotted and any(len(part) > 63 for part in name.split(".")):
            yield "each period-separated part must be at most 63 characters long"
        if name.startswith("goog"):
            yield "it must not begin with 'goog'"
        if re.search(r"g[o0]{2}g[l1]e", name):
            yield "it must not contain 'google' or a close misspelling of it"

    def key_problems(self, key: str) -> Iterable[str]:
        yield from super().key_problems(key)
        if key in (".", ".."):
            yield "'.' and '..' are not object names in Cloud Storage"
        if key.startswith(".well-known/acme-challenge/"):
            yield "names under '.well-known/acme-challenge/' are reserved"

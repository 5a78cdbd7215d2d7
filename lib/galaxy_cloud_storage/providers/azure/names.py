"""Azure Blob Storage's naming rules, checked before any call (invariant 10); what every cloud's rules
share is in providers/names.py."""

from typing import Iterable

from ..names import NameRules


class AzureNameRules(NameRules):
    """Azure Blob Storage's container and blob naming rules (learn.microsoft.com, "Naming and
    Referencing Containers, Blobs, and Metadata")."""

    cloud = "Azure Blob Storage"
    bucket_word = "container"
    max_key_bytes = 1024  # Azure counts characters; no key of 1024 bytes has more than 1024 of them
    dot_segments_allowed = False
    MAX_SEGMENTS = 254
    SPECIAL_CONTAINERS = ("$root", "$web")

    def bucket_problems(self, name: str) -> Iterable[str]:
        if name in self.SPECIAL_CONTAINERS:
            return
        if not 3 <= len(name) <= 63:
            yield "it must be 3 to 63 characters long"
        if not self.matches(name, "a-z0-9-"):
            yield "it may hold only lowercase letters, digits and hyphens"
        elif name[0] == "-" or name[-1] == "-":
            yield "it must begin and end with a letter or a digit"
        if "--" in name:
            yield "it must not hold two hyphens in a row"

    def key_problems(self, key: str) -> Iterable[str]:
        yield from super().key_problems(key)
        segments = key.split("/")
        if len(segments) > self.MAX_SEGMENTS:
            yield f"it has more than {self.MAX_SEGMENTS} path segments"
        if any(segment.endswith(".") and segment not in (".", "..") for segment in segments):
            yield "no path segment may end with a period (Azure drops it, and another blob would be reached)"
        if key.endswith("/"):
            yield "it must not end with '/'"

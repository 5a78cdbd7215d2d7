"""OpenStack Swift's naming rules, checked before any call (invariant 10); what every cloud's rules
share is in providers/names.py."""

from typing import Iterable

from ..names import has_control_character, NameRules


class SwiftNameRules(NameRules):
    """OpenStack Swift's container and object name constraints (Swift's ``constraints.py``
    defaults: 256 bytes per container name, 1024 per object name, valid UTF-8 without NUL)."""

    cloud = "OpenStack Swift"
    bucket_word = "container"
    max_key_bytes = 1024
    dot_segments_allowed = False
    MAX_CONTAINER_BYTES = 256

    def bucket_problems(self, name: str) -> Iterable[str]:
        if not name:
            yield "it is empty"
        if len(name.encode()) > self.MAX_CONTAINER_BYTES:
            yield f"it must be at most {self.MAX_CONTAINER_BYTES} bytes long (UTF-8)"
        if "/" in name:
            yield "it must not hold '/'"
        if name in (".", ".."):
            yield "'.' and '..' are not container names (HTTP would resolve them to the account)"
        if has_control_character(name):
            yield "it holds a control character"

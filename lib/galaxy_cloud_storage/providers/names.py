"""Naming rules for buckets (containers) and object keys, checked before any call: what every
cloud's rules share. Each cloud's own rules are a subclass in its package (``aws.S3NameRules``,
``azure.AzureNameRules``, ``gcp.GcsNameRules``, ``openstack.SwiftNameRules``).

Invariant 10 (docs/design.rst): a name from a user or a bucket is hostile. It is checked against the
rules its cloud documents, so that a name the cloud would refuse is the user's 400 (not a 502),
and a name the HTTP path would change is refused before it can reach another object, container,
host or region. Pure Python: the web process checks a request's names before it exchanges any
credential.

Why keys with ``.`` or ``..`` segments are refused on Azure and Swift only: their SDKs put the key
in the URL path as it is, and HTTP clients (and proxies in front of the service) resolve dot
segments before the request leaves (RFC 3986, 5.2.4), so ``x/../a`` would read or write ``a``, and
``../c/a`` another container. Neither SDK can be told to send the name percent-encoded. S3 and GCS
hold such keys and get exactly the name given: botocore sends S3 paths unnormalized, and
google-cloud-storage encodes the whole name (``/`` included) into one path segment.
"""

import ipaddress
import re
from typing import ClassVar, Iterable, Optional

# C0 and C1 control characters and DEL: S3 and Azure list keys in XML 1.0, which cannot carry most
# of them (Azurite's listing fails with a 500 once one is stored), GCS refuses CR and LF and
# advises against the rest, and Swift refuses NUL (HTTP 412).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A lone surrogate (JSON's "\ud800") is no character at all: no cloud's name can hold it in UTF-8.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class InvalidName(ValueError):
    """A bucket or key that breaks its cloud's rules; ``str()`` says which rule, fit for a user."""


class NameRules:
    """A cloud's rules. Subclasses set the limits and add their own checks in ``*_problems``."""

    cloud: ClassVar[str] = ""
    bucket_word: ClassVar[str] = "bucket"
    #: a key's longest length, in bytes of UTF-8
    max_key_bytes: ClassVar[int] = 1024
    #: whether a key may hold "." or ".." as a path segment (see the module's docstring)
    dot_segments_allowed: ClassVar[bool] = True

    def check_bucket(self, name: str) -> None:
        problem = "it is not valid Unicode" if _SURROGATE.search(name) else next(iter(self.bucket_problems(name)), None)
        if problem:
            raise InvalidName(f"{self._quoted(name)} is not a valid {self.cloud} {self.bucket_word} name: {problem}.")

    def key_problem(self, key: str) -> Optional[str]:
        """Why ``key`` cannot be an object name of this cloud, or None."""
        problem = next(iter(self.key_problems(key)), None)
        return f"{self._quoted(key)} is not a valid {self.cloud} object name: {problem}" if problem else None

    def prefix_problem(self, prefix: str) -> Optional[str]:
        """Why no object name of this cloud can begin with ``prefix``, or None. The key's rules,
        but not those only a whole name breaks: a folder's prefix may end in ``/``, or in a
        segment (``a/..``) that more characters make a valid one (``a/..b``)."""
        problem = next(iter(self.key_problems(prefix + "_")), None)
        return f"no {self.cloud} object name can begin with {self._quoted(prefix)}: {problem}" if problem else None

    def check_key(self, key: str) -> None:
        problem = self.key_problem(key)
        if problem:
            raise InvalidName(f"{problem}.")

    # -- the rules --------------------------------------------------------------------------------

    def bucket_problems(self, name: str) -> Iterable[str]:
        raise NotImplementedError

    def key_problems(self, key: str) -> Iterable[str]:
        if not key:
            yield "it is empty"
        if _SURROGATE.search(key):
            yield "it is not valid Unicode (it holds a lone surrogate)"
            return
        if len(key.encode()) > self.max_key_bytes:
            yield f"it is longer than {self.max_key_bytes} bytes (UTF-8)"
        if _CONTROL.search(key):
            yield "it holds a control character (such as NUL, a tab or a line break)"
        if not self.dot_segments_allowed and any(segment in (".", "..") for segment in key.split("/")):
            yield (
                f"it has a '.' or '..' path segment, which HTTP resolves before {self.cloud} sees the name "
                "(another object would be reached)"
            )

    # -- shared pieces ----------------------------------------------------------------------------

    @staticmethod
    def _quoted(name: str) -> str:
        shown = name if len(name) <= 80 else f"{name[:77]}..."
        return repr(shown)

    @staticmethod
    def matches(name: str, allowed: str) -> bool:
        """Whether ``name`` holds only the characters of the regex class ``allowed``."""
        return re.fullmatch(f"[{allowed}]+", name) is not None

    @classmethod
    def dns_name_problems(cls, name: str, max_length: int, allowed: str, allowed_words: str) -> Iterable[str]:
        """Rules shared by S3 and GCS bucket names (names fit for DNS)."""
        if not 3 <= len(name) <= max_length:
            yield f"it must be 3 to {max_length} characters long"
        if not cls.matches(name, allowed):
            yield f"it may hold only {allowed_words}"
        elif not (name[0].isalnum() and name[-1].isalnum()):
            yield "it must begin and end with a lowercase letter or a digit"
        if ".." in name:
            yield "it must not hold two periods in a row"
        if _is_ip_address(name):
            yield "it must not look like an IP address"


def has_control_character(name: str) -> bool:
    return _CONTROL.search(name) is not None


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False

"""Each cloud's naming rules for buckets (containers) and object keys, checked before any call.

Invariant 10: a name from a user or a bucket is hostile. It is checked here against the rules its
cloud documents, so that a name the cloud would refuse is the user's 400 (not a 502), and a name
the HTTP path would change is refused before it can reach another object, container, host or
region. Each cloud's rules are one class; ``NameRules`` holds what they share. Pure Python: the web
process checks a request's names before it exchanges any credential.

Why keys with ``.`` or ``..`` segments are refused on Azure and Swift only: their SDKs put the key
in the URL path as it is, and HTTP clients (and proxies in front of the service) resolve dot
segments before the request leaves (RFC 3986, 5.2.4), so ``x/../a`` would read or write ``a``, and
``../c/a`` another container. Neither SDK can be told to send the name percent-encoded. S3 and GCS
hold such keys and get exactly the name given: botocore sends S3 paths unnormalized, and
google-cloud-storage encodes the whole name (``/`` included) into one path segment.
"""

import ipaddress
import re
from typing import (
    ClassVar,
    Iterable,
    Optional,
)

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
    def _dns_name_problems(name: str, max_length: int, allowed: str, allowed_words: str) -> Iterable[str]:
        """Rules shared by S3 and GCS bucket names (names fit for DNS)."""
        if not 3 <= len(name) <= max_length:
            yield f"it must be 3 to {max_length} characters long"
        if not re.fullmatch(f"[{allowed}]+", name):
            yield f"it may hold only {allowed_words}"
        elif not (name[0].isalnum() and name[-1].isalnum()):
            yield "it must begin and end with a lowercase letter or a digit"
        if ".." in name:
            yield "it must not hold two periods in a row"
        if _is_ip_address(name):
            yield "it must not look like an IP address"


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class S3NameRules(NameRules):
    """Amazon S3's general purpose bucket rules and object key rules (docs.aws.amazon.com,
    "Bucket naming rules" and "Naming Amazon S3 objects"). A bucket name is also what keeps the
    request's host the admin's: an access point ARN (``arn:aws:s3:...``) or an alias would make
    botocore send the request elsewhere."""

    cloud = "Amazon S3"
    RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
    RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")

    def bucket_problems(self, name: str) -> Iterable[str]:
        if name.startswith("arn:"):
            yield "ARNs (access points, Outposts) are not accepted; name the bucket itself"
            return
        yield from self._dns_name_problems(name, 63, "a-z0-9.-", "lowercase letters, digits, periods and hyphens")
        if ".-" in name or "-." in name:
            yield "a period must not be next to a hyphen"
        for prefix in self.RESERVED_PREFIXES:
            if name.startswith(prefix):
                yield f"the prefix '{prefix}' is reserved by AWS"
        for suffix in self.RESERVED_SUFFIXES:
            if name.endswith(suffix):
                yield f"the suffix '{suffix}' is reserved by AWS (access point aliases and directory buckets)"


class GcsNameRules(NameRules):
    """Google Cloud Storage's bucket and object naming rules (cloud.google.com/storage/docs,
    "Bucket names" and "Object names")."""

    cloud = "Google Cloud Storage"

    def bucket_problems(self, name: str) -> Iterable[str]:
        # Names with periods may be up to 222 characters long, each period-separated part up to 63.
        dotted = "." in name
        words = "lowercase letters, digits, hyphens, underscores and periods"
        yield from self._dns_name_problems(name, 222 if dotted else 63, "a-z0-9._-", words)
        if dotted and any(len(part) > 63 for part in name.split(".")):
            yield "each period-separated part must be at most 63 characters long"
        if name.startswith("goog"):
            yield "it must not begin with 'goog'"
        if re.search(r"g[o0]{2}g(l|1)e", name):
            yield "it must not contain 'google' or a close misspelling of it"

    def key_problems(self, key: str) -> Iterable[str]:
        yield from super().key_problems(key)
        if key in (".", ".."):
            yield "'.' and '..' are not object names in Cloud Storage"
        if key.startswith(".well-known/acme-challenge/"):
            yield "names under '.well-known/acme-challenge/' are reserved"


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
        if not re.fullmatch(r"[a-z0-9-]+", name):
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
        if _CONTROL.search(name):
            yield "it holds a control character"

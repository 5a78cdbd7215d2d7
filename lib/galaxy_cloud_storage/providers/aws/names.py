"""Amazon S3's naming rules, checked before any call (invariant 10); what every cloud's rules
share is in providers/names.py."""

from typing import Iterable

from ..names import NameRules


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
        yield from self.dns_name_problems(name, 63, "a-z0-9.-", "lowercase letters, digits, periods and hyphens")
        if ".-" in name or "-." in name:
            yield "a period must not be next to a hyphen"
        for prefix in self.RESERVED_PREFIXES:
            if name.startswith(prefix):
                yield f"the prefix '{prefix}' is reserved by AWS"
        for suffix in self.RESERVED_SUFFIXES:
            if name.endswith(suffix):
                yield f"the suffix '{suffix}' is reserved by AWS (access point aliases and directory buckets)"

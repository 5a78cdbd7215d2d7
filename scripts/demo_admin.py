"""Look into the demo's buckets with each storage server's own access (``admin`` in demo.json), not
through Galaxy: put an object there before a ``get``, see what a ``send`` wrote.

    .venv/bin/python scripts/demo_admin.py put  PROVIDER KEY < FILE
    .venv/bin/python scripts/demo_admin.py cat  PROVIDER KEY > FILE
    .venv/bin/python scripts/demo_admin.py list PROVIDER [PREFIX]

PROVIDER is aws, azure, gcp or openstack; the bucket is the demo's (``bucket`` in demo.json).
"""

import argparse
import json
import os
import sys
from pathlib import Path

from galaxy_cloud_storage_testing.storage_servers import StorageAdmin

ROOT = Path(__file__).resolve().parent.parent


def storage_admin(provider: str, admin: dict, demo_dir: Path) -> StorageAdmin:
    """The harness's admin client for ``provider`` from its ``admin`` entry in demo.json."""
    if provider == "aws":
        from galaxy_cloud_storage_testing.moto_aws import AwsAdmin

        return AwsAdmin(admin["endpoint_url"], admin["access_key"], admin["secret_key"])
    if provider == "azure":
        from urllib.parse import urlparse

        from galaxy_cloud_storage_testing.azurite import AzuriteAdmin
        from galaxy_cloud_storage_testing.local_ca import local_certificates

        fields = dict(part.split("=", 1) for part in admin["connection_string"].split(";") if part)
        endpoint = urlparse(fields["BlobEndpoint"])
        https = local_certificates(str(demo_dir / "clouds" / "azure" / "tls")) if endpoint.scheme == "https" else None
        return AzuriteAdmin(endpoint.port, https=https)
    if provider == "gcp":
        from galaxy_cloud_storage_testing.fake_gcs import FakeGcsAdmin

        return FakeGcsAdmin(admin["endpoint_url"], project=admin["project"])
    if provider == "openstack":
        from galaxy_cloud_storage_testing.swift_aio import SwiftAdmin

        return SwiftAdmin(admin["auth_url"], admin["user"], admin["key"])
    raise SystemExit(f"unknown provider {provider}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("put", "cat", "list"))
    parser.add_argument("provider", choices=("aws", "azure", "gcp", "openstack"))
    parser.add_argument("key", nargs="?", default="")
    args = parser.parse_args()
    demo_dir = Path(os.environ.get("GALAXY_CLOUD_DEMO_DIR") or ROOT / ".demo").resolve()
    described = json.loads((demo_dir / "demo.json").read_text())
    if args.provider not in described["providers"]:
        raise SystemExit(f"the demo did not start {args.provider} (see --providers)")
    cloud = described["providers"][args.provider]
    admin, bucket = storage_admin(args.provider, cloud["admin"], demo_dir), cloud["bucket"]
    if args.action == "put":
        admin.put_object(bucket, args.key, sys.stdin.buffer.read())
    elif args.action == "cat":
        sys.stdout.buffer.write(admin.get_object(bucket, args.key))
    else:
        print("\n".join(admin.list_keys(bucket, args.key)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

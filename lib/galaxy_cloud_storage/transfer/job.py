"""The transfer job's entry point, run by the cloud_storage_get/send tools inside a Galaxy job:

    python -m galaxy_cloud_storage.transfer.job get|send MANIFEST CREDENTIALS

It needs nothing from Galaxy's web process or database (invariant 9): the manifest says what to
move where, the credentials file (written by the handler when the job was prepared) says how.
The credentials file is deleted as soon as it is read. Any failed object fails the job (exit 1)
with a line per object on stderr, which Galaxy shows on the job's datasets (invariant 7).
"""

import json
import os
import sys
from typing import Optional

from ..providers import storage_backend
from ..providers.base import StorageBackend
from .engine import (
    get_objects,
    GetItem,
    ItemResult,
    send_files,
    SendItem,
)

GALAXY_JSON = "galaxy.json"  # Galaxy reads each output's metadata (the sniffed ext) from it


def read_credentials(path: str) -> dict:
    try:
        with open(path) as fh:
            return json.load(fh)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def report(results: list[ItemResult], verb: str) -> int:
    for result in results:
        if result.ok:
            print(f"{verb} {result.key} ({result.size} bytes)")
    failed = [r for r in results if not r.ok]
    for result in failed:
        print(f"Failed: {result.error}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(results)} objects failed.", file=sys.stderr)
    return 1 if failed else 0


def datatypes_registry(conf: Optional[str]):
    from galaxy.datatypes.registry import Registry

    registry = Registry()
    registry.load_datatypes(root_dir=os.getcwd(), config=conf)
    return registry


def set_datatypes(manifest: dict) -> None:
    """Sniff (or take ``file_type``), convert when asked, and tell Galaxy each dataset's ext."""
    from galaxy.datatypes.upload_util import handle_upload

    args = manifest.get("input_args") or {}
    registry = datatypes_registry(manifest.get("datatypes_conf"))
    provided = {}
    for item in manifest["items"]:
        response = handle_upload(
            registry=registry,
            path=item["path"],
            requested_ext=args.get("file_type") or "auto",
            name=item["key"],
            tmp_prefix=None,
            tmp_dir=os.getcwd(),
            check_content=False,  # the object's bytes are the user's; keep them as they are
            link_data_only=False,
            in_place=True,
            auto_decompress=False,
            convert_to_posix_lines=bool(args.get("to_posix_lines")),
            convert_spaces_to_tabs=bool(args.get("space_to_tab")),
        )
        provided[item["output"]] = {"ext": response.ext}
    with open(GALAXY_JSON, "w") as meta:
        json.dump(provided, meta)


def run_get(backend: StorageBackend, manifest: dict) -> int:
    items = [GetItem(item["key"], item["path"]) for item in manifest["items"]]
    status = report(get_objects(backend, manifest["bucket"], items), "Copied")
    if status == 0:
        set_datatypes(manifest)
    return status


def run_send(backend: StorageBackend, manifest: dict) -> int:
    bucket = manifest["bucket"]
    items = [SendItem(item["path"], item["key"]) for item in manifest["items"]]
    if not manifest.get("overwrite_existing"):
        # Names were chosen at request time not to replace anything; one that appeared since is kept.
        appeared = [item for item in items if backend.stat(bucket, item.key) is not None]
        if appeared:
            results = [ItemResult(item.key, False, 0, f"object '{item.key}' appeared in '{bucket}' since the request; not replaced") for item in appeared]
            items = [item for item in items if item not in appeared]
            return report(results + send_files(backend, bucket, items), "Sent")
    return report(send_files(backend, bucket, items), "Sent")


def main(argv: Optional[list[str]] = None) -> int:
    action, manifest_path, credentials_path = argv if argv is not None else sys.argv[1:]
    delegation = read_credentials(credentials_path)
    with open(manifest_path) as fh:
        manifest = json.load(fh)
    if "error" in delegation:
        print(f"No cloud credentials: {delegation['error']}", file=sys.stderr)
        return 1
    backend = storage_backend(**delegation)
    return run_get(backend, manifest) if action == "get" else run_send(backend, manifest)


if __name__ == "__main__":
    sys.exit(main())

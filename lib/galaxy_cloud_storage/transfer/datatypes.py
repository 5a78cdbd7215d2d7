"""The get job's second step: sniff each new dataset's datatype (or take ``file_type``), convert
text when asked, and tell Galaxy through galaxy.json. Run after the transfer succeeded:

    python -m galaxy_cloud_storage.transfer.datatypes MANIFEST

A process of its own because Galaxy's datatypes registry costs about 250 MiB and several seconds to
load, which the transfer itself does not need.
"""

import json
import os
import sys
from typing import Optional

from ..contracts import GetManifest

GALAXY_JSON = "galaxy.json"  # Galaxy reads each output's metadata (the sniffed ext) from it


def datatypes_registry(conf: Optional[str]):
    from galaxy.datatypes.registry import Registry

    registry = Registry()
    registry.load_datatypes(root_dir=os.getcwd(), config=conf)
    return registry


def set_datatypes(manifest: GetManifest) -> None:
    """Sniff (or take ``file_type``), convert when asked, and tell Galaxy each dataset's ext."""
    from galaxy.datatypes.upload_util import handle_upload

    args = manifest.input_args
    registry = datatypes_registry(manifest.datatypes_conf)
    provided = {}
    for item in manifest.items:
        response = handle_upload(
            registry=registry,
            path=item.path,
            requested_ext=args.file_type,
            name=item.key,
            tmp_prefix=None,
            tmp_dir=os.getcwd(),
            check_content=False,  # the object's bytes are the user's; keep them as they are
            link_data_only=False,
            in_place=True,
            auto_decompress=False,
            convert_to_posix_lines=args.to_posix_lines,
            convert_spaces_to_tabs=args.space_to_tab,
        )
        provided[item.output] = {"ext": response.ext}
    with open(GALAXY_JSON, "w") as meta:
        json.dump(provided, meta)


def main(argv: Optional[list[str]] = None) -> int:
    (manifest_path,) = argv if argv is not None else sys.argv[1:]
    with open(manifest_path) as fh:
        manifest = GetManifest.model_validate_json(fh.read())
    if manifest.input_args.needs_datatypes_step:
        set_datatypes(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The get job's second step: sniff each new dataset's datatype (or take ``file_type``), convert
text when asked, and tell Galaxy through galaxy.json. Run after the transfer succeeded:

    python -m galaxy_cloud_storage.transfer.datatypes MANIFEST

A process of its own because Galaxy's datatypes registry costs about 250 MiB and several seconds to
load, which the transfer itself does not need.

Where Galaxy's datatypes are not installed (a Pulsar node with the plugin alone), each dataset is
declared ``_sniff_`` instead: Galaxy sniffs it when it sets its metadata, after the job.
"""

import importlib.util
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


#: The ext that has Galaxy sniff a dataset when it sets its metadata, after the job, with its own
#: datatypes registry (galaxy.metadata.set_metadata); for nodes without Galaxy's datatypes.
SNIFF_IN_GALAXY = "_sniff_"


def has_galaxy_datatypes() -> bool:
    """Whether Galaxy's datatypes (galaxy-data) are installed where the job runs: in Galaxy's venv,
    yes; on a Pulsar node with the plugin alone, no."""
    return importlib.util.find_spec("galaxy") is not None and importlib.util.find_spec("galaxy.datatypes") is not None


def leave_sniffing_to_galaxy(manifest: GetManifest) -> None:
    """Tell Galaxy to sniff each dataset itself once it has fetched it (README "Pulsar")."""
    with open(GALAXY_JSON, "w") as meta:
        json.dump({item.output: {"ext": SNIFF_IN_GALAXY} for item in manifest.items}, meta)


def main(argv: Optional[list[str]] = None) -> int:
    (manifest_path,) = argv if argv is not None else sys.argv[1:]
    with open(manifest_path) as fh:
        manifest = GetManifest.model_validate_json(fh.read())
    args = manifest.input_args
    if not args.needs_datatypes_step:
        return 0
    if has_galaxy_datatypes():
        set_datatypes(manifest)
    elif args.to_posix_lines or args.space_to_tab:
        # Galaxy's conversions live in galaxy-data; without it the bytes would stay unconverted.
        print(
            "Converting line endings or spaces (to_posix_lines, space_to_tab) needs Galaxy's datatypes "
            "(the galaxy-data package) where the job runs, which this node does not have; nothing was "
            "converted.",
            file=sys.stderr,
        )
        return 1
    else:
        leave_sniffing_to_galaxy(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

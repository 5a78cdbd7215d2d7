"""The get job's datatypes step: sniff each new dataset's datatype (or take ``file_type``), convert
text when asked, and tell Galaxy through galaxy.json. The transfer starts it beside itself
(``DatatypesStep``) and tells it each object as it lands, so the datasets are sniffed while the
others still download, and Galaxy's datatypes registry loads meanwhile:

    python -m galaxy_cloud_storage.transfer.datatypes MANIFEST --as-they-arrive

reads from stdin, a line per object as it lands, the manifest's item index and the object's
SHA-256, then ``done`` when every object came; without ``done`` (the transfer failed or was
stopped) it declares nothing. It declares each dataset's ext and SHA-256 (its Galaxy hash,
dataset_hashes.py). Without ``--as-they-arrive`` it does every item at once (a job prepared by an
older version of the tool).

A process of its own because Galaxy's datatypes registry costs about 250 MiB and several seconds to
load, which the transfer itself does not need (invariant 8).

Where Galaxy's datatypes are not installed (a Pulsar node with the plugin alone), each dataset is
declared ``_sniff_`` instead: Galaxy sniffs it when it sets its metadata, after the job.
"""

import importlib.util
import json
import os
import subprocess
import sys
import threading
from typing import Iterable, Optional

from ..contracts import GetManifest
from ..providers.integrity import digest_file, SHA256

MODULE = "galaxy_cloud_storage.transfer.datatypes"
GALAXY_JSON = "galaxy.json"  # Galaxy reads each output's metadata (the sniffed ext) from it


def datatypes_registry(conf: Optional[str]):
    from galaxy.datatypes.registry import Registry

    registry = Registry()
    registry.load_datatypes(root_dir=os.getcwd(), config=conf)
    return registry


def declared(ext: str, sha256: Optional[str]) -> dict:
    """What galaxy.json says of one dataset: its ext, and its SHA-256 where the transfer gave one."""
    entry = {"ext": ext}
    if sha256:
        entry["hashes"] = [{"hash_function": SHA256, "hash_value": sha256}]
    return entry


def set_datatypes(manifest: GetManifest, arrived: Iterable[tuple[int, Optional[str]]]) -> None:
    """Sniff (or take ``file_type``) and convert each item of ``arrived`` (indexes into the
    manifest's items, with the object's SHA-256) as it comes, then tell Galaxy each dataset's ext
    and hash."""
    from galaxy.datatypes.upload_util import handle_upload

    args = manifest.input_args
    registry = datatypes_registry(manifest.datatypes_conf)
    provided = {}
    for index, sha256 in arrived:
        item = manifest.items[index]
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
        if response.converted_newlines or response.converted_spaces:
            # Converted in place: the dataset's hash is its new file's, no longer the object's.
            sha256 = digest_file(item.path).sha256
        provided[item.output] = declared(response.ext, sha256)
    write_galaxy_json(provided)


def write_galaxy_json(provided: dict) -> None:
    with open(GALAXY_JSON, "w") as meta:
        json.dump(provided, meta)


#: What the transfer writes on the datatypes step's stdin once every object came.
ALL_ARRIVED = "done"


class TransferEnded(Exception):
    """The transfer ended without every object: declare nothing."""


def arrivals(lines: Iterable[str]) -> Iterable[tuple[int, Optional[str]]]:
    """The item indexes the transfer writes, each with the object's SHA-256, until its ``done``;
    TransferEnded at an end without it."""
    for line in lines:
        if line.strip() == ALL_ARRIVED:
            return
        index, _, sha256 = line.strip().partition(" ")
        yield int(index), sha256 or None
    raise TransferEnded()


#: The ext that has Galaxy sniff a dataset when it sets its metadata, after the job, with its own
#: datatypes registry (galaxy.metadata.set_metadata); for nodes without Galaxy's datatypes.
SNIFF_IN_GALAXY = "_sniff_"


def has_galaxy_datatypes() -> bool:
    """Whether Galaxy's datatypes (galaxy-data) are installed where the job runs: in Galaxy's venv,
    yes; on a Pulsar node with the plugin alone, no."""
    return importlib.util.find_spec("galaxy") is not None and importlib.util.find_spec("galaxy.datatypes") is not None


def leave_sniffing_to_galaxy(manifest: GetManifest, arrived: Iterable[tuple[int, Optional[str]]]) -> None:
    """Tell Galaxy to sniff each dataset itself once it has fetched it (README "Pulsar")."""
    write_galaxy_json({manifest.items[index].output: declared(SNIFF_IN_GALAXY, sha256) for index, sha256 in arrived})


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    as_they_arrive = "--as-they-arrive" in argv
    (manifest_path,) = [arg for arg in argv if arg != "--as-they-arrive"]
    with open(manifest_path) as fh:
        manifest = GetManifest.model_validate_json(fh.read())
    args = manifest.input_args
    if not args.needs_datatypes_step:
        return 0
    arrived = arrivals(sys.stdin) if as_they_arrive else ((index, None) for index in range(len(manifest.items)))
    try:
        if has_galaxy_datatypes():
            set_datatypes(manifest, arrived)
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
            leave_sniffing_to_galaxy(manifest, arrived)
    except TransferEnded:
        return 0  # the transfer says why; nothing is declared
    return 0


class DatatypesStep:
    """The datatypes step as the transfer process sees it: a process started beside the transfer
    (``main --as-they-arrive``), told each object's index as it lands (``arrived``, from the
    transfer's threads), and ``finish``-ed with whether every object came. A step that has died
    is not written to again; its exit status fails the job."""

    def __init__(self, manifest: GetManifest, manifest_path: str):
        self._index = {item.key: i for i, item in enumerate(manifest.items)}
        self._lock = threading.Lock()
        self._process = subprocess.Popen(
            [sys.executable, "-m", MODULE, manifest_path, "--as-they-arrive"],
            stdin=subprocess.PIPE,
            text=True,
        )

    @classmethod
    def start(cls, manifest: GetManifest, manifest_path: str) -> Optional["DatatypesStep"]:
        return cls(manifest, manifest_path) if manifest.input_args.needs_datatypes_step else None

    def arrived(self, key: str, sha256: str) -> None:
        self._write(f"{self._index[key]} {sha256}\n")

    def finish(self, all_arrived: bool) -> int:
        """Its exit status, once it has declared every dataset (or, without ``all_arrived``, none)."""
        if all_arrived:
            self._write(f"{ALL_ARRIVED}\n")
        else:
            self._process.terminate()  # nothing to declare: no need to wait for the registry to load
        try:
            self._process.stdin.close()
        except OSError:
            pass
        status = self._process.wait()
        return status if all_arrived else 0

    def _write(self, line: str) -> None:
        with self._lock:
            try:
                self._process.stdin.write(line)
                self._process.stdin.flush()
            except OSError:  # it ended early: its exit status and stderr say why
                pass


if __name__ == "__main__":
    sys.exit(main())

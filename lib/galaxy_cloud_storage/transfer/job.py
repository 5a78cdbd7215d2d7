"""The transfer job's entry point, run by the cloud_storage_get/send tools inside a Galaxy job:

    python -m galaxy_cloud_storage.transfer.job get|send MANIFEST CREDENTIALS

It needs nothing from Galaxy's database and one call to Galaxy's API (invariant 9,
docs/design.rst): the manifest says what to move where; the credentials file (written by the
handler when the job was prepared) names a one-time ticket in the job's working directory, deleted
(with the job script's copies) as soon as it is read, which the job redeems for its credentials at
Galaxy's API as it starts (tickets.py). Any failed object fails the job (exit 1) with a line per
object on stderr, which Galaxy shows on the job's datasets (invariant 7). Datatypes are set by
``transfer.datatypes``, a process this one starts beside itself and tells of each object as it
lands, so that Galaxy's datatypes registry does not weigh on this one's memory (invariant 8).
"""

import json
import os
import resource
import signal
import sys
import threading
from typing import Optional

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..contracts import GetManifest, JOB_CREDENTIALS, JobCredentials, MintingFailure, SendManifest
from ..providers.integrity import SHA256
from ..providers.storage import STOPPED, StorageBackend
from .datatypes import DatatypesStep, write_galaxy_json
from .engine import get_objects, ItemResult, send_files
from .progress import ByteMeter, human_bytes, ProgressReport


def credential_copies(path: str) -> list[str]:
    """A file of the job's ``working/`` or ``configs/`` and the job script's copies of it. Before the
    tool runs (to restore them for a rerun), Galaxy's job script copies both directories to
    ``_working/`` and ``_configs/``, Pulsar's to ``working.orig/`` and ``configs.orig/``; and the
    job directory stays after the job (always with ``cleanup_job: never``, for failed jobs with
    Galaxy's default ``onsuccess``): the copies have to go too."""
    copies = [path]
    directory, name = os.path.split(os.path.abspath(path))
    parent, base = os.path.split(directory)
    if base in ("working", "configs"):
        copies += [os.path.join(parent, f"_{base}", name), os.path.join(parent, f"{base}.orig", name)]
    return copies


def read_ticket(pointer_path: str) -> dict:
    """What the handler wrote for this job (tickets.ticket_file: ``{"url", "ticket"}``):
    ``pointer_path`` is the job's ``credentials`` config file, which names the private file in the
    job's working directory, this process's current directory (the tools run there under Galaxy's
    runners and Pulsar alike, and Pulsar rewrites the paths of the config files, not the names in
    them). Both files, and the job script's copies of them, are deleted as they are read."""
    with open(pointer_path) as fh:
        name = os.path.basename(fh.read().strip())
    path = os.path.join(os.getcwd(), name)
    try:
        with open(path) as fh:
            return json.load(fh)
    finally:
        for copy in credential_copies(path) + credential_copies(pointer_path):
            try:
                os.unlink(copy)
            except OSError:
                pass


# Galaxy's 503s asked again, 0.5 s to 15 s apart: about two minutes of a busy database in all.
BUSY_RETRIES = 10


class NoCredentials(Exception):
    """The job could not obtain its credentials; the message says why, for its datasets."""


def redemption_session() -> requests.Session:
    """Retries only what did not use the ticket: a connection that never reached Galaxy, and
    Galaxy's 503 (tickets.DatabaseBusy: its database was locked, the ticket rolled back). A ticket
    works once, so no other answer is asked again."""
    session = requests.Session()
    retry = Retry(
        total=None,
        connect=3,
        read=0,
        status=BUSY_RETRIES,
        other=0,
        status_forcelist=(503,),
        backoff_factor=0.5,
        backoff_max=15,
        allowed_methods=None,
        raise_on_status=False,
    )
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def redeem_ticket(ticket: dict) -> JobCredentials:
    """The job's credentials, for its ticket, from Galaxy's web process (tickets.redeem)."""
    url = ticket["url"]
    try:
        response = redemption_session().post(url, json={"ticket": ticket["ticket"]}, timeout=(30, 300))
    except requests.RequestException as e:
        raise NoCredentials(f"Galaxy could not be reached at {url} for this job's credentials: {e}") from e
    if not response.ok:
        try:
            reason = response.json()["err_msg"]
        except (ValueError, KeyError, TypeError):
            reason = response.text[:200]
        raise NoCredentials(f"Galaxy refused this job's credentials ({response.status_code}): {reason}")
    retries = getattr(response.raw, "retries", None)
    if busy := [entry for entry in (retries.history if retries else ()) if entry.status == 503]:
        print(f"Galaxy's database was busy ({len(busy)} x 503); the credentials came when asked again")
    return JOB_CREDENTIALS.validate_python(response.json())


def summary_line(verb: str, result: ItemResult) -> str:
    """The job's line for one object as it ends: what a user checks afterwards."""
    retries = f"{result.retries} {'retry' if result.retries == 1 else 'retries'}"
    if not result.ok:
        return f"Failed '{result.key}' after {result.seconds:.1f} s and {retries} (the error is on stderr)"
    verified = result.verified
    return (
        f"{verb} '{result.key}': {_size_text(result.size)} in {result.seconds:.1f} s, "
        f"SHA-256 {verified.sha256}, {verified.describe()}, {retries}"
    )


def _size_text(size: int) -> str:
    return f"{size} bytes" if size < 1024 else f"{size} bytes ({human_bytes(size)})"


def report_failures(results: list[ItemResult]) -> int:
    failed = [r for r in results if not r.ok]
    for result in failed:
        print(f"Failed: {result.error}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(results)} objects failed.", file=sys.stderr)
    return 1 if failed else 0


def transfer_with_progress(
    verb: str, total_bytes: Optional[int], items: list, backend: StorageBackend, move, on_ok=None
):
    """``move(on_result=...)`` with the job's progress lines, and a line for each object as it ends."""
    meter = ByteMeter()
    backend.count_bytes = meter.add
    with ProgressReport(len(items), total_bytes, meter) as progress:

        def ended(result: ItemResult) -> None:
            progress.object_ended()
            progress.line(summary_line(verb, result))
            if result.ok and on_ok is not None:
                on_ok(result)

        results = move(on_result=ended)
    return results


def dataset_hash_entries(result: ItemResult) -> list[dict]:
    """The object's hash as Galaxy keeps it on the dataset (dataset_hashes.py)."""
    return [{"hash_function": SHA256, "hash_value": result.verified.sha256}]


def run_get(backend: StorageBackend, manifest: GetManifest, manifest_path: str) -> int:
    """Every object, each sniffed as it lands by the datatypes step running beside (DatatypesStep)
    and its SHA-256 declared for its dataset (in galaxy.json: the step's, or this process's)."""
    step = DatatypesStep.start(manifest, manifest_path)
    outputs = {item.key: item.output for item in manifest.items}
    hashes = {}

    def landed(result: ItemResult) -> None:
        hashes[outputs[result.key]] = dataset_hash_entries(result)
        if step is not None:
            step.arrived(result.key, result.verified.sha256)

    sizes = [item.size_hint for item in manifest.items]
    total = sum(sizes) if None not in sizes else None
    status = 1
    try:
        results = transfer_with_progress(
            "Copied",
            total,
            manifest.items,
            backend,
            lambda on_result: get_objects(backend, manifest.bucket, manifest.items, on_result=on_result),
            landed,
        )
        status = report_failures(results)
    finally:
        all_arrived = status == 0 and not STOPPED.is_set()
        sniffed = step.finish(all_arrived=all_arrived) if step is not None else 0
    if step is None and all_arrived:
        write_galaxy_json({output: {"hashes": found} for output, found in hashes.items() if output})
    return status or sniffed


def run_send(backend: StorageBackend, manifest: SendManifest) -> int:
    bucket, items = manifest.bucket, manifest.items
    refused = []
    if not manifest.overwrite_existing:
        # Names were chosen at request time not to replace anything; one that appeared since is kept.
        found = backend.stat_many(bucket, [item.key for item in items])  # one listing, not a HEAD each
        appeared = {item.key for item, info in zip(items, found, strict=True) if info is not None}
        refused = [
            ItemResult(
                item.key, False, 0, f"object '{item.key}' appeared in '{bucket}' since the request; not replaced"
            )
            for item in items
            if item.key in appeared
        ]
        items = [item for item in items if item.key not in appeared]
    total = sum(_size(item.path) for item in items)
    results = transfer_with_progress(
        "Sent", total, items, backend, lambda on_result: send_files(backend, bucket, items, on_result=on_result)
    )
    return report_failures(refused + results)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # its failure says why


# The tools' last line of stdout when the job ran to its end, failures included. The tools'
# <stdio> fails a job whose stdout lacks it: a job killed before its end (by scancel or a lost
# node) leaves no exit code file, and Galaxy's runners then take it for exit code 0.
END_OF_JOB = "galaxy-cloud-storage: the transfer job ran to its end"


# Seconds a stopped job has to unwind before it exits anyway, within Slurm's KillWait (30 s).
STOP_GRACE = 20


def stop(signum, frame) -> None:
    """SIGTERM, as a batch system stops a job: every transfer unwinds (providers.cancellation).
    Then exit, unwound or not: Galaxy's local runner signals the job's process group but checks
    only its own child, the job script, which SIGTERM ends at once, so it never sends the SIGKILL
    that would end a transfer stuck on a cloud that stopped answering (test_gravity's restart)."""
    STOPPED.set()
    deadline = threading.Timer(STOP_GRACE, os._exit, args=(128 + signal.SIGTERM,))
    deadline.daemon = True
    deadline.start()


def main(argv: Optional[list[str]] = None) -> int:
    signal.signal(signal.SIGTERM, stop)
    status = transfer(*(argv if argv is not None else sys.argv[1:]))
    if STOPPED.is_set():
        print("The job was stopped (SIGTERM) before its end; what was not whole was not kept.", file=sys.stderr)
        return 128 + signal.SIGTERM
    print(END_OF_JOB)
    return status


def transfer(action: str, manifest_path: str, credentials_path: str) -> int:
    ticket = read_ticket(credentials_path)
    with open(manifest_path) as fh:
        manifest_json = fh.read()
    try:
        credentials = redeem_ticket(ticket)
    except NoCredentials as e:
        print(f"No cloud credentials: {e}", file=sys.stderr)
        return 1
    if isinstance(credentials, MintingFailure):
        print(f"No cloud credentials: {credentials.error}", file=sys.stderr)
        return 1
    backend = credentials.backend()
    if action == "get":
        status = run_get(backend, GetManifest.model_validate_json(manifest_json), manifest_path)
    else:
        status = run_send(backend, SendManifest.model_validate_json(manifest_json))
    print(f"Peak memory of the transfer: {peak_rss_mib():.0f} MiB")
    return status


def peak_rss_mib() -> float:
    """This process's peak resident memory (the kernel's count; Linux gives KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    sys.exit(main())

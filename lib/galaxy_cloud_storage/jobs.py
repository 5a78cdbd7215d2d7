"""What the job handler runs while it prepares a transfer job (called from the tools' Cheetah
config files, see tools/*.xml): the job's manifest, from the job's one parameter, the request
(contracts.TransferRequest), and its ticket for credentials (tickets.py); and the removal of both
once the job ends.

The handler may be a separate Galaxy process where the plugin's routes are not mounted, so
everything here is built from Galaxy's app alone.
"""

import glob
import logging
import os
import tempfile
import weakref
from typing import Optional

from galaxy import exceptions
from galaxy.model import Job
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from .authz.delegation import CredentialBroker
from .authz.manager import CloudAuthzManager
from .config import config_file_path, load_config
from .contracts import (
    GetItem,
    GetManifest,
    JobCredentials,
    MintingFailure,
    output_name,
    SendItem,
    SendManifest,
    TransferRequest,
)
from .model import CloudAuthz, now

log = logging.getLogger(__name__)

GET_TOOL_ID = "cloud_storage_get"
SEND_TOOL_ID = "cloud_storage_send"
TRANSFER_TOOL_IDS = (GET_TOOL_ID, SEND_TOOL_ID)
# The job's private file: its one-time ticket for credentials (tickets.ticket_file).
CREDENTIALS_PREFIX = "cloud-credentials-"
# Where the ticket is written: the tool's working directory, which is the job's current directory
# under every runner and which Pulsar stages to its node with the job (it sends a job's declared
# config files only, not the other files of configs/).
TICKET_DIRECTORY = "working"
# The directories of a job that may hold a copy of the ticket: TICKET_DIRECTORY and the copies
# that job scripts make of it before the tool runs, to restore it for a rerun (Galaxy's
# ``_working``, Pulsar's ``working.orig``); and configs/ with its copies, where versions without
# Pulsar support wrote it (a job prepared before an upgrade).
CREDENTIALS_DIRECTORIES = tuple(
    pattern.format(name) for name in (TICKET_DIRECTORY, "configs") for pattern in ("{}", "_{}", "{}.orig")
)
# Every state a job reaches once its tool has run or will not run any more.
ENDED_STATES = {
    Job.states.OK,
    Job.states.ERROR,
    Job.states.FAILED,
    Job.states.PAUSED,
    Job.states.DELETING,
    Job.states.DELETED,
    Job.states.STOPPING,
    Job.states.STOPPED,
    Job.states.SKIPPED,
}


def credential_broker(app) -> CredentialBroker:
    config = load_config(config_file_path(app.config))
    return CredentialBroker(app, config, CloudAuthzManager(config, app.vault))


def minted(app, user, authz_id: int) -> JobCredentials:
    """The credentials of ``user``'s authorization ``authz_id``, or the failure the job reports on
    its datasets (tickets.redeem, when the job starts)."""
    session = app.model.session
    try:
        authz = session.get(CloudAuthz, authz_id)
        if authz is None or user is None or authz.user_id != user.id:
            raise exceptions.ObjectNotFound("The cloud authorization of this job was deleted.")
        delegation = credential_broker(app).delegate(authz, user)
        record_use(session, authz)
        return delegation
    except exceptions.MessageException as e:
        return MintingFailure(error=str(e))
    except Exception:
        log.exception("Minting cloud credentials for a transfer job failed")
        return MintingFailure(
            error="Galaxy could not obtain cloud credentials (an unexpected error; see Galaxy's log)."
        )


def record_use(session, authz: CloudAuthz) -> None:
    """``last_activity``, as well as the database allows: the credentials are minted and the
    ticket used, so a busy SQLite (another writer's long transaction) must not fail the job."""
    authz.last_activity = now()
    try:
        session.commit()
    except OperationalError as e:
        session.rollback()
        log.warning("Could not record the use of cloud authorization %s: %s", authz.id, e.orig)


def write_private_file(directory: str, text: str) -> str:
    """Write ``text`` to a new file in ``directory`` that only this user may read, whatever the
    umask (mkstemp creates it 0600, before a byte is in it); returns the file's name."""
    fd, path = tempfile.mkstemp(dir=directory, prefix=CREDENTIALS_PREFIX, suffix=".json")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return os.path.basename(path)


def credentials_files(job_directory: str) -> list[str]:
    """The credentials files in a job directory (Galaxy's, or the copy Pulsar stages): in each of
    CREDENTIALS_DIRECTORIES."""
    return [
        path
        for directory in CREDENTIALS_DIRECTORIES
        for path in glob.glob(os.path.join(job_directory, directory, f"{CREDENTIALS_PREFIX}*"))
    ]


def remove_credentials(app, job: Job) -> None:
    """Remove a job's credentials files, if its directory still holds any."""
    try:
        job_directory = app.object_store.get_filename(job, base_dir="job_work", dir_only=True, obj_dir=True)
    except Exception:  # no such directory (cleaned up, or never made): nothing to remove
        return
    for path in credentials_files(job_directory):
        try:
            os.unlink(path)
            log.info("Removed the cloud credentials of job %s, which ended %s", job.id, job.state)
        except FileNotFoundError:
            pass


class EndedJobsWatcher:
    """Removes a transfer job's credentials as soon as it ends in any way, in this process.

    The job deletes them as its first step, but a job that fails or is deleted before its tool
    runs (a runner error, a deleted job waiting in a batch queue) never takes that step, and Galaxy
    keeps failed job directories by default. Galaxy has no hook for a tool's job ending, so this
    listens for Job.state changes (SQLAlchemy's attribute events) in the processes that change it:
    the job handler (from when it prepares the first transfer job) and the web process (where a
    user deletes a job). The event is the class's, for the whole process; the job directories are
    those of the Galaxy app that last asked (one app per process, but for tests)."""

    def __init__(self) -> None:
        self._app: Optional[weakref.ref] = None

    def watch(self, app) -> None:
        if self._app is None:
            event.listen(Job.state, "set", self._on_state_change)
        self._app = weakref.ref(app)

    def _on_state_change(self, job: Job, state, _previous, _initiator) -> None:
        app = self._app() if self._app is not None else None
        if app is not None and job.tool_id in TRANSFER_TOOL_IDS and state in ENDED_STATES:
            remove_credentials(app, job)


_ended_jobs = EndedJobsWatcher()


def forget_credentials_of_ended_jobs(app) -> None:
    """Have this process remove the credentials of transfer jobs that end (EndedJobsWatcher)."""
    _ended_jobs.watch(app)


def _matched(keys: list[str], datasets: list) -> list:
    if len(keys) != len(datasets):
        raise ValueError(f"the job has {len(datasets)} datasets for {len(keys)} objects")
    return list(zip(keys, datasets, strict=True))


def get_manifest(request, outputs: list, datatypes_conf) -> str:
    """What the job copies where: ``outputs`` are the job's datasets named by
    contracts.output_name(0), output_name(1), ..., in order."""
    request = TransferRequest.model_validate_json(str(request))
    sizes = request.sizes or [None] * len(request.keys)  # none in jobs made before 0.11
    items = [
        GetItem(key, str(output), output_name(i), size)
        for i, ((key, output), size) in enumerate(zip(_matched(request.keys, outputs), sizes, strict=True))
    ]
    return GetManifest(
        bucket=request.bucket, items=items, input_args=request.input_args, datatypes_conf=str(datatypes_conf)
    ).model_dump_json()


def dataset_hashes(wrapper) -> tuple[dict[str, str], ...]:
    """The Galaxy hashes of a job input's dataset (a Cheetah DatasetFilenameWrapper), of its
    primary file (not its extra files): the send checks the file against them before it sends."""
    dataset = getattr(getattr(wrapper, "unsanitized", None), "dataset", None)
    return tuple(
        {"hash_function": str(entry.hash_function), "hash_value": entry.hash_value}
        for entry in (dataset.hashes if dataset is not None else ())
        if not entry.extra_files_path and entry.hash_value
    )


def send_manifest(request, inputs: list) -> str:
    """What the job sends where: ``inputs`` are the job's datasets named by
    contracts.input_name(0), input_name(1), ..., in order."""
    request = TransferRequest.model_validate_json(str(request))
    items = [SendItem(str(dataset), key, dataset_hashes(dataset)) for key, dataset in _matched(request.keys, inputs)]
    return SendManifest(
        bucket=request.bucket, items=items, overwrite_existing=request.overwrite_existing
    ).model_dump_json()

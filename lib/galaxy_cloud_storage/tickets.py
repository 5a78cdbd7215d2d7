"""One-time tickets: how a transfer job obtains its credentials when it starts, not before.

A job may wait in a batch queue (Slurm, Pulsar's) for longer than cloud credentials live (an hour
for STS, Entra and Google tokens), so nothing is minted while the job is prepared. The handler
writes the job a ticket instead (``ticket_file``, from the tools' Cheetah config files): a random
secret, in a file readable by Galaxy's user alone, with the URL where the job redeems it; Galaxy's
database keeps only its SHA-256 (``model.JobTicket``). The job, as its first step, posts the ticket
to ``POST /api/cloud/storage/jobs/{job_id}/credentials`` in Galaxy's web process (``redeem``),
which deletes the ticket (a ticket works once) and mints the credentials for the job's own user
and authorization, while the job has not ended.
"""

import hashlib
import hmac
import json
import logging
import os
import secrets

from galaxy import exceptions
from galaxy.model import Job
from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError

from .contracts import JobCredentials, TransferRequest
from .jobs import (
    ENDED_STATES,
    forget_credentials_of_ended_jobs,
    minted,
    TICKET_DIRECTORY,
    TRANSFER_TOOL_IDS,
    write_private_file,
)
from .model import JobTicket, now

log = logging.getLogger(__name__)

REDEEM_PATH = "/api/cloud/storage/jobs/{job_id}/credentials"


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


class InvalidTicket(exceptions.ItemAccessibilityException):
    """403, as Galaxy answers a job files request with a wrong job key."""


class DatabaseBusy(exceptions.MessageException):
    """503: SQLite was locked by another writer, so the ticket was not used; the job asks again.
    (A 1,000-dataset get's job handler holds SQLite's write lock for longer than its busy timeout
    as the job starts.)"""

    status_code = 503
    err_code = exceptions.error_codes.error_codes_by_name["INTERNAL_SERVER_ERROR"]


def is_database_locked(error: OperationalError) -> bool:
    return "database is locked" in str(error.orig)


def _job_of_directory(app, job_directory: str) -> Job:
    """The job whose working directory this is. Galaxy names a job's directory by the job's id
    (object store ``obj_dir``); the path is checked against the object store's own."""
    name = os.path.basename(os.path.normpath(job_directory))
    job = app.model.session.get(Job, int(name)) if name.isdigit() else None
    if job is None or job.tool_id not in TRANSFER_TOOL_IDS:
        raise ValueError(f"{job_directory} is not the directory of a transfer job")
    expected = app.object_store.get_filename(job, base_dir="job_work", dir_only=True, obj_dir=True)
    if os.path.realpath(expected) != os.path.realpath(job_directory):
        raise ValueError(f"{job_directory} is not the directory of job {job.id} ({expected})")
    return job


class JobTickets:
    """Issues a job's ticket (in the job handler) and redeems it (in the web process)."""

    def __init__(self, app):
        self.app = app

    def issue(self, job_directory: str, authz_id: int, galaxy_url: str) -> dict:
        """A new ticket for the job of ``job_directory`` (a resubmitted job's old ticket stops
        working): what the job needs to redeem it, ``{"url", "ticket"}``."""
        job = _job_of_directory(self.app, job_directory)
        ticket = secrets.token_urlsafe(32)
        session = self.app.model.session
        session.execute(delete(JobTicket).where(JobTicket.job_id == job.id))
        session.add(JobTicket(job_id=job.id, authz_id=authz_id, ticket_sha256=_digest(ticket), create_time=now()))
        session.commit()
        path = REDEEM_PATH.format(job_id=self.app.security.encode_id(job.id))
        return {"url": galaxy_url.rstrip("/") + path, "ticket": ticket}

    def redeem(self, job_id: int, ticket: str) -> JobCredentials:
        """The credentials of job ``job_id`` for its ticket, which is used up; 403 for a ticket
        that is wrong or used, or a job that has ended."""
        session = self.app.model.session
        try:
            row = session.scalars(select(JobTicket).where(JobTicket.job_id == job_id)).first()
            if row is None or not hmac.compare_digest(row.ticket_sha256, _digest(ticket)):
                raise InvalidTicket("This ticket is not valid for this job (wrong, or already used).")
            # The DELETE decides between two requests racing with the same ticket: one row, one winner.
            used = session.execute(
                delete(JobTicket).where(JobTicket.job_id == job_id, JobTicket.ticket_sha256 == row.ticket_sha256)
            )
            session.commit()
        except OperationalError as e:
            session.rollback()
            if is_database_locked(e):  # rolled back: the ticket still works
                raise DatabaseBusy("Galaxy's database is busy; this ticket is unused: ask again.") from e
            raise
        if used.rowcount != 1:
            raise InvalidTicket("This ticket is not valid for this job (wrong, or already used).")
        job = session.get(Job, job_id)
        if job is None or job.state in ENDED_STATES:
            raise InvalidTicket("This job has ended; its ticket is void.")
        log.info("Minting cloud credentials for transfer job %s as it starts", job_id)
        return minted(self.app, job.user, row.authz_id)


def ticket_file(app_wrapper, user_wrapper, request, job_directory, galaxy_url) -> str:
    """Issue the job's ticket and write it into a private file of the job's working directory
    (jobs.TICKET_DIRECTORY, which goes wherever the job runs, a Pulsar node too); returns that
    file's name, which is all the job's ``credentials`` config file holds (Galaxy makes its config
    files world-readable). Called from the tools' Cheetah config files."""
    app = app_wrapper.obj
    forget_credentials_of_ended_jobs(app)
    authz_id = TransferRequest.model_validate_json(str(request)).authz_id
    issued = JobTickets(app).issue(str(job_directory), authz_id, str(galaxy_url))
    working = os.path.join(str(job_directory), TICKET_DIRECTORY)
    os.makedirs(working, exist_ok=True)  # Galaxy has made it by now; this only makes sure
    return write_private_file(working, json.dumps(issued))

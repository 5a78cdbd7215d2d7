"""Run on a Pulsar node before Pulsar starts: end the jobs that Pulsar was running when it stopped.

    galaxy-cloud-storage-pulsar-recover STAGING_DIRECTORY

Why: Pulsar's ``queued_python`` manager (pulsar-app 0.16.0) runs each job as a child of the server
and records it as running while a ``pid`` file is in the job's directory, which only the thread
watching the child removes. A Pulsar that stops (a restart, a crash, the node going down) takes its
jobs with it, and when it starts again it cannot recover them, yet goes on answering "running" for
each, and so Galaxy keeps the job running for ever (README "Pulsar").

This marks each such job as ended, as Pulsar itself would had it seen its process end: without an
exit code (the tool did not finish), with exit code 1 (``return_code``) and a line on the tool's
stderr that says what happened; and no ``pid`` nor ``submitted`` file. Pulsar then reports the job
complete; Galaxy fetches its outputs, sees the exit code and puts the job and its datasets in
error with that message, never ok. A job
whose process is still alive (Pulsar stopped alone) is killed first: nothing would watch it.

It reads and writes the files of Pulsar's job directories directly, so it must run while Pulsar is
stopped (systemd: ``ExecStartPre=``). Only Pulsar's own metadata files of those jobs are touched.
"""

import argparse
import json
import os
import signal
import sys
from typing import Optional

# Pulsar's names for a job directory's files (pulsar.managers.unqueued, .base.directory, .stateful).
PID = "pid"
SUBMITTED = "submitted"
FINAL_STATUS = "final_status"
RETURN_CODE = "return_code"
UNKNOWN_RETURN_CODE = "__unknown__"
TOOL_STDERR = os.path.join("metadata", "tool_stderr")
MESSAGE = "The Pulsar server stopped while this job ran; the job did not finish and its outputs are incomplete."


def _own_process_alive(pid: int, job_directory: str) -> bool:
    """Whether ``pid`` is alive and is this job's (its working directory is in the job's
    directory): a pid from before a reboot may belong to another process now."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return os.path.commonpath([cwd, job_directory]) == job_directory


def end_interrupted_job(job_directory: str) -> bool:
    """End the job of ``job_directory`` if Pulsar was running it when it stopped; returns whether
    it was such a job."""
    pid_file = os.path.join(job_directory, PID)
    if not os.path.exists(pid_file) or os.path.exists(os.path.join(job_directory, FINAL_STATUS)):
        return False
    with open(pid_file) as fh:
        pid = int(json.loads(fh.read()))
    if _own_process_alive(pid, job_directory):
        os.kill(pid, signal.SIGKILL)
    return_code = os.path.join(job_directory, RETURN_CODE)
    try:
        with open(return_code) as fh:
            recorded = fh.read().strip()
    except FileNotFoundError:
        recorded = UNKNOWN_RETURN_CODE
    # The job script writes the tool's exit code as the tool ends: a job with one finished (Pulsar
    # stopped before it saw that) keeps it, and its outputs are whole.
    if recorded in ("", UNKNOWN_RETURN_CODE):
        with open(return_code, "w") as fh:
            fh.write("1")
        stderr = os.path.join(job_directory, TOOL_STDERR)
        os.makedirs(os.path.dirname(stderr), exist_ok=True)
        with open(stderr, "a") as fh:
            fh.write(f"\n{MESSAGE}\n")
    for name in (PID, SUBMITTED):
        try:
            os.unlink(os.path.join(job_directory, name))
        except FileNotFoundError:
            pass
    return True


def end_interrupted_jobs(staging_directory: str) -> list[str]:
    """End every job Pulsar was running when it stopped; returns their ids."""
    ended = []
    for job_id in sorted(os.listdir(staging_directory)):
        job_directory = os.path.join(os.path.abspath(staging_directory), job_id)
        if os.path.isdir(job_directory) and end_interrupted_job(job_directory):
            ended.append(job_id)
    return ended


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("staging_directory", help="Pulsar's staging_directory (app.yml)")
    args = parser.parse_args(argv)
    for job_id in end_interrupted_jobs(args.staging_directory):
        print(f"Pulsar job {job_id} was interrupted: ended with exit code 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())

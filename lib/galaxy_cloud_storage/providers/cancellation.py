"""Stopping a transfer that its job was told to stop, cleanly.

A batch system stops a job with SIGTERM, then SIGKILL some time later (Slurm's ``scancel``: 30 s,
its KillWait). The job's SIGTERM handler sets ``storage.STOPPED``; from then on every read of a
file being sent, and every progress report of s3transfer, raises ``storage.TransferStopped`` in
the thread moving it, and no download becomes its dataset's file. That unwinds each backend's
own failure path as any error would: S3's multipart upload aborted, Azure's blocks left
uncommitted, GCS's resumable session unfinished, Swift's segments deleted, a download's partial
file removed. Without it a cancelled send left its multipart upload
and its parts in the bucket (test_slurm).
"""

import io

from .storage import check_not_stopped


def s3transfer_progress(_bytes: int) -> None:
    """A ``Callback`` for boto3's transfers: s3transfer calls it from the threads moving the parts."""
    check_not_stopped()


class StoppableReader(io.BufferedReader):
    """A file opened for sending, as ``open(path, "rb")``, whose reads stop when the job is stopped."""

    def read(self, size: int = -1) -> bytes:
        check_not_stopped()
        return super().read(size)

    def read1(self, size: int = -1) -> bytes:
        check_not_stopped()
        return super().read1(size)

    def readinto(self, buffer) -> int:
        check_not_stopped()
        return super().readinto(buffer)


def open_for_sending(path: str) -> StoppableReader:
    return StoppableReader(io.FileIO(path, "rb"))

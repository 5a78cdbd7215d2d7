"""Stopping a transfer that its job was told to stop, cleanly.

A batch system stops a job with SIGTERM, then SIGKILL some time later (Slurm's ``scancel``: 30 s,
its KillWait). The job's SIGTERM handler sets ``storage.STOPPED``; from then on every read of a
file being sent, and every progress report of s3transfer, raises ``storage.TransferStopped`` in
the thread moving it, and no download becomes its dataset's file. That unwinds each backend's
own failure path as any error would: S3's multipart upload aborted, Azure's blocks left
uncommitted, GCS's resumable session unfinished, Swift's segments deleted, a download's partial
file removed. Without it a cancelled send left its multipart upload
and its parts in the bucket (test_slurm).

Once stopped, nothing is asked again and nothing is completed: S3 retries no call and completes no
multipart upload, Azure commits no block list (each backend says where). A stop raised inside a
request's body otherwise looks like a failed request to an SDK that retries those (botocore did,
with backoff, and a cancelled send took 20 s to unwind instead of the time its parts in flight
needed).
"""

import io
from typing import Callable, Optional

from .storage import check_not_stopped


def s3transfer_progress(count: Callable[[int], None]) -> Callable[[int], None]:
    """A ``Callback`` for boto3's transfers, which s3transfer calls from the threads moving the
    parts with the bytes each moved: it stops them when the job is stopped, and counts the bytes."""

    def callback(moved: int) -> None:
        check_not_stopped()
        count(moved)

    return callback


class StoppableReader(io.BufferedReader):
    """A file opened for sending, as ``open(path, "rb")``, whose reads stop when the job is stopped
    and, given ``count``, are counted (the job's progress)."""

    def __init__(self, raw, count: Optional[Callable[[int], None]] = None) -> None:
        super().__init__(raw)
        self._count = count

    def read(self, size: int = -1) -> bytes:
        check_not_stopped()
        return self._counted(super().read(size))

    def read1(self, size: int = -1) -> bytes:
        check_not_stopped()
        return self._counted(super().read1(size))

    def readinto(self, buffer) -> int:
        check_not_stopped()
        read = super().readinto(buffer)
        if self._count is not None and read:
            self._count(read)
        return read

    def _counted(self, data: bytes) -> bytes:
        if self._count is not None and data:
            self._count(len(data))
        return data


def open_for_sending(path: str, count: Optional[Callable[[int], None]] = None) -> StoppableReader:
    return StoppableReader(io.FileIO(path, "rb"), count)

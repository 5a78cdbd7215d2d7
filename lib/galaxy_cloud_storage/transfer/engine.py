"""Move many objects in parallel, in the style of boto3's s3transfer: a plan (one task per object)
executed by a bounded pool, with a result per object.

The pool is bounded at both levels: ``workers`` objects at a time here, and each backend moves one
object in a bounded number of parts, so memory does not grow with the number or size of objects.
A failed object is reported in its ``ItemResult`` (naming the object and the cause) and the others
carry on; the caller decides what a failure means for the job.
"""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional, Sequence

from ..contracts import GetItem, SendItem
from ..providers.integrity import Verified
from ..providers.storage import StorageBackend, StorageError, Transferred

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 4
#: Objects at a time when every object of a get was listed below SMALL_OBJECT bytes: each is one
#: request, so the time per object is the cloud's latency, which more at once hide. Within the
#: smallest connection pool of the backends (requests' default of 10, Azure's).
SMALL_OBJECT_WORKERS = 8
SMALL_OBJECT = 1024 * 1024


@dataclass
class ItemResult:
    key: str
    ok: bool
    size: int
    error: Optional[str] = None
    seconds: float = 0.0
    #: how the bytes were verified (their SHA-256 among it); None for a failed object
    verified: Optional[Verified] = None
    #: requests and bodies asked again after a transient fault
    retries: int = 0


@dataclass(frozen=True)
class Task:
    """One planned object: its key, what failure says it was doing, the work itself, and how many
    retries its backend counted (for a failed object, whose work returned nothing)."""

    key: str
    doing: str
    work: Callable[[], Transferred]
    retries: Callable[[], int] = lambda: 0


OnResult = Optional[Callable[[ItemResult], None]]


def get_objects(backend: StorageBackend, bucket: str, items: Sequence[GetItem], **kwargs) -> list[ItemResult]:
    """Download every item; results in the order of ``items`` (``execute``'s keywords)."""
    kwargs.setdefault("workers", workers_for(items))
    return execute([_task(backend, bucket, item) for item in items], **kwargs)


def workers_for(items: Sequence[GetItem]) -> int:
    """More objects at once where all are small (by the sizes listed); memory stays bounded, as a
    small object is one read buffer, and a large one keeps to DEFAULT_WORKERS x its parts."""
    small = all(item.size_hint is not None and item.size_hint < SMALL_OBJECT for item in items)
    return SMALL_OBJECT_WORKERS if items and small else DEFAULT_WORKERS


def send_files(backend: StorageBackend, bucket: str, items: Sequence[SendItem], **kwargs) -> list[ItemResult]:
    """Upload every item; results in the order of ``items`` (``execute``'s keywords)."""
    return execute([_task(backend, bucket, item) for item in items], **kwargs)


def _task(backend: StorageBackend, bucket: str, item) -> Task:
    retries = partial(backend.take_retries, item.key)
    if isinstance(item, GetItem):
        return Task(
            item.key,
            f"copy '{item.key}' from bucket '{bucket}'",
            partial(backend.download, bucket, item.key, item.path, item.size_hint),
            retries,
        )
    return Task(
        item.key,
        f"send '{item.key}' to bucket '{bucket}'",
        partial(backend.upload, item.path, bucket, item.key, item.hashes),
        retries,
    )


def execute(plan: Sequence[Task], workers: int = DEFAULT_WORKERS, on_result: OnResult = None) -> list[ItemResult]:
    """Run the plan on at most ``workers`` threads; ``on_result`` hears of each item as it ends."""
    if not plan:
        return []

    def run(task: Task) -> ItemResult:
        started = time.monotonic()
        try:
            moved = task.work()
            result = ItemResult(
                task.key, True, moved.size, None, time.monotonic() - started, moved.verified, moved.retries
            )
        except StorageError as e:  # already a message for the user
            result = ItemResult(
                task.key, False, 0, f"Could not {task.doing}: {e}", time.monotonic() - started, None, task.retries()
            )
        except Exception as e:  # not expected: still one item's failure, not the whole job's
            log.exception("Unexpected error while trying to %s", task.doing)
            result = ItemResult(
                task.key,
                False,
                0,
                f"Could not {task.doing}: {type(e).__name__}: {e}",
                time.monotonic() - started,
                None,
                task.retries(),
            )
        log.info("%s: %s", task.doing, "done" if result.ok else result.error)
        if on_result is not None:
            on_result(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(plan))), thread_name_prefix="cloud-transfer") as pool:
        return list(pool.map(run, plan))

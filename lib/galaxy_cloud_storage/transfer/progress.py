"""Progress a user can watch: a transfer job's standard output, which Galaxy shows while the job
runs (``GET /api/jobs/{id}/console_output``, with ``live_tool_output_reporting`` on its
destination) and keeps once it ends.

While the job runs, a line every PROGRESS_INTERVAL seconds: objects done of all, bytes moved of
all, the throughput over the last interval, and the time left at that pace. As each object ends,
one line: its key, size, seconds, SHA-256, how its bytes were verified, and its retries.
"""

import os
import sys
import threading
import time
from typing import Optional, TextIO

#: Seconds between two progress lines (a user sees one at least every 5 s); an admin may set
#: another in the job's environment (job_conf.yml: env), between 0.2 and 5 s.
PROGRESS_INTERVAL = 3.0
INTERVAL_VARIABLE = "GALAXY_CLOUD_STORAGE_PROGRESS_INTERVAL"


def progress_interval() -> float:
    try:
        return min(5.0, max(0.2, float(os.environ.get(INTERVAL_VARIABLE, PROGRESS_INTERVAL))))
    except ValueError:
        return PROGRESS_INTERVAL


KiB = 1024


def human_bytes(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < KiB or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= KiB
    raise AssertionError("unreachable")


def human_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class ByteMeter:
    """Bytes moved so far, added to from the transfer's threads (s3transfer may add a negative
    count when it sends a part again)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, count: int) -> None:
        with self._lock:
            self.value += count


class ProgressReport:
    """The job's progress lines, from a thread of its own while the transfer runs."""

    def __init__(
        self,
        objects: int,
        total_bytes: Optional[int],
        meter: ByteMeter,
        out: TextIO = sys.stdout,
        interval: Optional[float] = None,
    ) -> None:
        self.objects, self.total_bytes, self.meter, self.out = objects, total_bytes, meter, out
        self.interval = interval if interval is not None else progress_interval()
        self.done = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloud-progress", daemon=True)
        self._last = (time.monotonic(), 0)

    def __enter__(self) -> "ProgressReport":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()
        self._thread.join()

    def line(self, text: str) -> None:
        """One line of the job's output, whole and at once, whichever thread writes it."""
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def object_ended(self) -> None:
        with self._lock:
            self.done += 1

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.line(self.progress_line())

    def progress_line(self) -> str:
        now, moved = time.monotonic(), self.meter.value
        then, moved_then = self._last
        self._last = (now, moved)
        rate = max(0.0, (moved - moved_then) / (now - then)) if now > then else 0.0
        line = f"Progress: {self.done} of {self.objects} objects, {human_bytes(moved)}"
        if self.total_bytes:
            line += f" of {human_bytes(self.total_bytes)} ({100 * moved / self.total_bytes:.0f}%)"
        line += f", {human_bytes(rate)}/s"
        if self.total_bytes and rate > 0:
            line += f", about {human_seconds(max(0, self.total_bytes - moved) / rate)} left"
        return line

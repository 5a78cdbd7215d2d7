"""The job's processes, seen from /proc: which ran when, their peak memory, when the bytes were all
written. The bench starts a watcher before each API call and reads its summary after the job."""

import os
import threading
import time
from typing import Optional

JOB_MARKER = "galaxy_cloud_storage.transfer.job"
DATATYPES_MARKER = "galaxy_cloud_storage.transfer.datatypes"  # the get's sniffing step, since b10efcb
METADATA_MARKER = "metadata/set.py"  # Galaxy's external metadata step, run by the job script after the tool


class JobProcessWatcher(threading.Thread):
    """Finds the job's ``python -m galaxy_cloud_storage.transfer.job`` process by polling /proc and
    reads its VmHWM (peak RSS, which the kernel keeps) and /proc/PID/io until it exits.

    Processes already running when the watcher starts are ignored; a new process whose command line
    does not (yet) name the job module is checked again for a while, since the job's shell forks
    before it execs Python. VmHWM never decreases, so its last value read before the process exits
    is the peak up to that moment (polled every ``interval`` s).
    """

    def __init__(self, session_id: int, total_bytes: int = 0, interval: float = 0.005, markers: Optional[dict] = None):
        super().__init__(daemon=True)
        self.session_id = session_id  # Galaxy's: its jobs run in process groups of their own, in its session
        self.interval = interval
        markers = markers or {"transfer": JOB_MARKER, "datatypes": DATATYPES_MARKER, "metadata": METADATA_MARKER}
        self.markers = {name: marker.encode() for name, marker in markers.items()}
        self.total_bytes = total_bytes
        self.stop_event = threading.Event()
        self.ignored = set(self._pids())
        self.first_seen: dict[int, float] = {}
        self.processes: dict[int, dict] = {}

    @staticmethod
    def _pids() -> list[int]:
        return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]

    def _look_for_new(self, now: float) -> None:
        for pid in self._pids():
            if pid in self.ignored or pid in self.processes:
                continue
            try:
                if os.getsid(pid) != self.session_id:  # another Galaxy's jobs (tests running beside us)
                    self.ignored.add(pid)
                    continue
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmdline = fh.read()
                with open(f"/proc/{pid}/status") as fh:
                    ppid = int(next(line for line in fh if line.startswith("PPid:")).split()[1])
            except (OSError, StopIteration, ValueError):
                self.ignored.add(pid)
                continue
            kind = next((name for name, marker in self.markers.items() if marker in cmdline), None)
            if kind and ppid in self.processes:
                kind = f"{kind} (child of {ppid})"  # a fork of a watched process: not the one to measure
            if kind and b"python" in cmdline.split(b"\0")[0]:
                self.processes[pid] = {
                    "kind": kind, "pid": pid, "cmdline": cmdline.replace(b"\0", b" ").decode(errors="replace")[:200],
                    "first_seen": now, "last_seen": now, "vm_hwm_kib": 0, "max_rss_kib": 0, "max_threads": 0,
                    "samples": [], "alive": True, "written_all_at": None, "hwm_when_written_kib": None,
                }  # fmt: skip
            elif now - self.first_seen.setdefault(pid, now) > 2.0:
                self.ignored.add(pid)

    def _sample(self, pid: int, info: dict, now: float) -> None:
        try:
            with open(f"/proc/{pid}/status") as fh:
                status = dict(line.split(":", 1) for line in fh if ":" in line)
            with open(f"/proc/{pid}/io") as fh:
                io = {k: int(v) for k, v in (line.split(":") for line in fh)}
        except (OSError, ValueError):
            info["alive"] = False
            return
        if "VmHWM" not in status:  # a zombie: its memory is gone, the last reading stands
            info["alive"] = False
            return
        info["last_seen"] = now
        info["vm_hwm_kib"] = max(info["vm_hwm_kib"], int(status["VmHWM"].split()[0]))
        rss = int(status["VmRSS"].split()[0])
        info["max_rss_kib"] = max(info["max_rss_kib"], rss)
        info["max_threads"] = max(info["max_threads"], int(status["Threads"]))
        wchar = io.get("wchar", 0)
        if info["written_all_at"] is None and self.total_bytes and wchar >= self.total_bytes:
            info["written_all_at"] = now
            info["hwm_when_written_kib"] = info["vm_hwm_kib"]
        if not info["samples"] or now - info["samples"][-1][0] >= 0.1:  # a reading every 100 ms
            info["samples"].append((round(now, 3), rss, io.get("rchar", 0), wchar))

    def run(self) -> None:
        while not self.stop_event.is_set():
            now = time.monotonic()
            self._look_for_new(now)
            for pid, info in self.processes.items():
                if info["alive"]:
                    self._sample(pid, info, now)
            time.sleep(self.interval)

    def stop(self) -> list[dict]:
        self.stop_event.set()
        self.join(5)
        return list(self.processes.values())


def process_summary(processes: list[dict], t0: float, direction: str) -> Optional[dict]:
    """Peak memory and the phases of the transfer process (start, all bytes written, exit) and of
    Galaxy's metadata step, in seconds after ``t0`` (the API call)."""
    metadata = [p for p in processes if p["kind"] == "metadata"]
    datatypes = [p for p in processes if p["kind"] == "datatypes"]
    transfers = [p for p in processes if p["kind"] == "transfer"]
    if not transfers:
        return None
    main = max(transfers, key=lambda p: p["last_seen"] - p["first_seen"])
    # A get writes the objects into files: once the process has written them all (wchar), the
    # bytes have moved and what follows is sniffing and exit. (A send's reads of the files cannot be
    # told from its reads of Python modules, so a send has no such mark.)
    done = main["written_all_at"] if direction == "get" else None
    rel = lambda t: round(t - t0, 3) if t is not None else None  # noqa: E731
    return {
        "pid": main["pid"],
        "peak_rss_mib": round(main["vm_hwm_kib"] / 1024, 1),
        "peak_rss_until_bytes_written_mib": round(main["hwm_when_written_kib"] / 1024, 1) if done else None,
        "max_threads": main["max_threads"],
        "started_s": rel(main["first_seen"]),
        "bytes_written_s": rel(done),
        "exited_s": rel(main["last_seen"]),
        "lifetime_s": round(main["last_seen"] - main["first_seen"], 3),
        "after_bytes_written_s": round(main["last_seen"] - done, 3) if done else None,
        # Galaxy's own metadata step (python metadata/set.py), after the tool, in the same job
        # the plugin's sniffing step (a process of its own since b10efcb; before, inside the transfer process)
        "datatypes_started_s": rel(datatypes[0]["first_seen"]) if datatypes else None,
        "datatypes_exited_s": rel(datatypes[0]["last_seen"]) if datatypes else None,
        "datatypes_peak_rss_mib": round(datatypes[0]["vm_hwm_kib"] / 1024, 1) if datatypes else None,
        "metadata_started_s": rel(metadata[0]["first_seen"]) if metadata else None,
        "metadata_exited_s": rel(metadata[0]["last_seen"]) if metadata else None,
        "metadata_peak_rss_mib": round(metadata[0]["vm_hwm_kib"] / 1024, 1) if metadata else None,
        "processes": [
            {
                k: (rel(v) if k in ("first_seen", "last_seen") else v)
                for k, v in p.items()
                if k not in ("samples", "written_all_at")
            }
            for p in processes
        ],
        "rss_mib_timeline": [(rel(t), round(rss / 1024)) for t, rss, _, _ in main["samples"]][::5],
    }

"""Get/send throughput of the plugin against the cloud's own SDK and rclone, in one run, for one
provider (aws, azure, gcp, openstack).

One local cloud (scripts/local_clouds.py: moto, Azurite, fake-gcs-server or a Swift cluster, with
its token endpoint) and one Galaxy 26.1 with the plugin (uvicorn, ``galaxy_cloud_storage.mount:factory``,
the local job runner, started here through scripts/localgalaxy.py) serve every measurement, so the
figures and their ratios come from the same machine at the same time. The SDK and rclone use the
credentials a transfer job of the plugin gets for the same authorization (bench/references.py).
Run it from the repository's venv:

    .venv/bin/python bench/cloud_bench.py --provider azure --scale 0.1   # a quick run
    .venv/bin/python bench/cloud_bench.py --provider openstack           # full size: 1 GiB, 8 x 128 MiB, 200 x 16 KiB

bench/README.md says how to read the output. Nothing here is part of CI.
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import (
    dataclass,
    field,
)
from datetime import datetime
from pathlib import Path
from typing import Optional

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "scripts"))

import localgalaxy  # noqa: E402
from local_clouds import (  # noqa: E402
    PROVIDERS,
    start_cloud,
)

# The plugin's modules, imported by import_plugin() once the snapshot (if any) is on sys.path; the
# references import the plugin's settings (part sizes), so they come after it too.
plugin_engine = tool_conf_xml = references = None

KiB, MiB, GiB = 1024, 1024**2, 1024**3
HOST = "127.0.0.1"
EMAIL = "bench@example.org"
# Everything goes into the one bucket the local cloud's user may use, under these prefixes: the
# sources, and per copier what it sends (the plugin's sent objects are named after their datasets,
# which the bench renames to send_key(...) before sending).
SRC_PREFIX = "bench/src/"
SEND_PREFIX = "bench/send/"
COPIERS = ("plugin", "sdk", "rclone")
JOB_MARKER = "galaxy_cloud_storage.transfer.job"
DATATYPES_MARKER = "galaxy_cloud_storage.transfer.datatypes"  # the get's sniffing step, since b10efcb
METADATA_MARKER = "metadata/set.py"  # Galaxy's external metadata step, run by the job script after the tool
TARGETS = {"ratio_large": 1.25, "ratio_small": 2.0, "peak_rss_mib": 300.0, "api_100_s": 0.5}
TERMINAL_JOB_STATES = {"ok", "error", "failed", "deleted", "deleting", "skipped"}
VENV_BIN = Path(sys.executable).parent


def snapshot_plugin(work: Path) -> dict:
    """Copy the plugin's package into the work directory and use that copy everywhere (this
    process, Galaxy, its jobs: PYTHONPATH comes before the editable install's .pth entry), so that
    commits landing in lib/ during a run cannot mix two versions in one set of figures."""
    source = ROOT / "lib" / "galaxy_cloud_storage"
    target = work / "plugin-lib"
    shutil.copytree(source, target / "galaxy_cloud_storage", ignore=shutil.ignore_patterns("__pycache__"))
    git = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout.strip()  # noqa: E731
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(target))
    return {"commit": git("rev-parse", "HEAD"), "lib_changes": git("status", "--porcelain", "--", "lib").splitlines(), "snapshot": str(target)}


def import_plugin() -> str:
    global plugin_engine, tool_conf_xml, references
    import galaxy_cloud_storage
    import references
    from galaxy_cloud_storage.tools import tool_conf_xml
    from galaxy_cloud_storage.transfer import engine as plugin_engine

    return os.path.dirname(galaxy_cloud_storage.__file__)


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


# -- workloads and their data ------------------------------------------------------------------------


@dataclass
class SourceObject:
    key: str
    path: str
    size: int
    sha256: str
    fingerprint: Optional[str]  # what the server reports for it sent in the plugin's parts (Reference.fingerprint)


@dataclass
class Workload:
    name: str
    label: str
    count: int
    size: int
    objects: list = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.count * self.size

    @property
    def prefix(self) -> str:
        return f"{SRC_PREFIX}{self.name}/"


def workloads(scale: float, small_count: int = 200) -> list[Workload]:
    """(a) and (b) measure bandwidth: ``scale`` shrinks them. (c) measures the cost per object, so it
    stays 16 KiB objects whatever the scale (fewer of them only for a smoke test)."""
    a, b = max(1, int(GiB * scale)), max(1, int(128 * MiB * scale))
    return [
        Workload("a", f"1 x {human(a)}", 1, a),
        Workload("b", f"8 x {human(b)}", 8, b),
        Workload("c", f"{small_count} x 16 KiB", small_count, 16 * KiB),
    ]


def human(size: float) -> str:
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor:
            return f"{size / factor:.4g} {unit}"
    return f"{size} B"


def make_file(path: str, size: int, chunk: int = 8 * MiB) -> str:
    """Random bytes (os.urandom, in chunks); returns their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(chunk, left))
            digest.update(block)
            fh.write(block)
            left -= len(block)
    return digest.hexdigest()


def sha256_file(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def make_data(work: Path, loads: list[Workload], tiny: int, fingerprint) -> list[SourceObject]:
    """Local files for every workload (kept: the SDK and rclone send them), plus the tiny object.
    ``fingerprint(path, size)``: what the server will report for the file (Reference.fingerprint)."""
    extra = []
    for load in loads:
        folder = work / "src" / load.name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(load.count):
            path = str(folder / f"obj-{i:03d}")
            sha = make_file(path, load.size)
            load.objects.append(SourceObject(f"{load.prefix}obj-{i:03d}", path, load.size, sha, fingerprint(path, load.size)))
    (work / "src" / "tiny").mkdir(parents=True, exist_ok=True)
    for name in ("warmup", "tiny"):
        path = str(work / "src" / "tiny" / name)
        sha = make_file(path, tiny)
        extra.append(SourceObject(f"{SRC_PREFIX}tiny/{name}", path, tiny, sha, fingerprint(path, tiny)))
    return extra


def send_key(copier: str, key: str) -> str:
    """Where ``copier`` sends the source object ``key``: bench/send/<copier>/<workload>/<name>."""
    return f"{SEND_PREFIX}{copier}/{key[len(SRC_PREFIX):]}"


# -- the transfer process's memory: /proc polling --------------------------------------------------


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
            {k: (rel(v) if k in ("first_seen", "last_seen") else v) for k, v in p.items() if k not in ("samples", "written_all_at")}
            for p in processes
        ],
        "rss_mib_timeline": [(rel(t), round(rss / 1024)) for t, rss, _, _ in main["samples"]][::5],
    }


# -- Galaxy ----------------------------------------------------------------------------------------


class Galaxy:
    def __init__(self, url: str, api_key: str, poll: float):
        self.url = url
        self.poll = poll
        self.http = requests.Session()
        self.http.headers["x-api-key"] = api_key

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.http.request(method, f"{self.url}/api/{path}", timeout=600, **kwargs)

    def ok(self, method: str, path: str, **kwargs):
        response = self.call(method, path, **kwargs)
        if response.status_code != 200:
            raise RuntimeError(f"{method} /api/{path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def new_history(self, name: str) -> str:
        return self.ok("POST", "histories", json={"name": name})["id"]

    def wait_job(self, job_id: str, t0: float, timeout: float = 3600) -> dict:
        """Poll the job until it ends; the first time each state was seen, relative to ``t0``."""
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.ok("GET", f"jobs/{job_id}")["state"]
            seen.setdefault(state, round(time.monotonic() - t0, 3))
            if state in TERMINAL_JOB_STATES:
                return seen
            time.sleep(self.poll)
        raise RuntimeError(f"job {job_id} not finished after {timeout} s (states seen: {seen})")

    def wait_datasets(self, history_id: str, count: int, timeout: float = 600) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = self.ok("GET", f"histories/{history_id}/contents", params={"v": "dev", "keys": "id,name,state,file_size,extension"})
            if len(items) >= count and all(item["state"] in ("ok", "error", "failed_metadata") for item in items):
                return items
            time.sleep(self.poll)
        raise RuntimeError(f"datasets of history {history_id} not ready after {timeout} s")

    def job_details(self, job_id: str) -> dict:
        job = self.ok("GET", f"jobs/{job_id}", params={"full": "true"})
        metrics = {}
        response = self.call("GET", f"jobs/{job_id}/metrics")
        if response.status_code == 200:
            metrics = {m["name"]: m.get("raw_value") for m in response.json()}
        return {
            "state": job["state"],
            "stderr_tail": (job.get("tool_stderr") or job.get("stderr") or "")[-2000:],
            "stdout_lines": len((job.get("tool_stdout") or "").splitlines()),
            "metrics": {k: metrics[k] for k in ("runtime_seconds", "start_epoch", "end_epoch", "galaxy_slots") if k in metrics},
        }


def start_galaxy(work: Path, provider: str, settings: dict) -> tuple[subprocess.Popen, str, str]:
    gx_dir = work / "galaxy"
    gx_dir.mkdir()
    plugin_tool_conf = gx_dir / "cloud_storage_tool_conf.xml"
    plugin_tool_conf.write_text(tool_conf_xml())
    plugin_config = {"providers": {provider: settings}}
    galaxy_yml = localgalaxy.write_galaxy_config(
        str(gx_dir), plugin_config, admin_email=EMAIL,
        tool_config_file=f"{gx_dir / 'tool_conf.xml'},{plugin_tool_conf}",
        preserve_python_environment="legacy_and_local",  # the transfer tools run the plugin's Python
    )  # fmt: skip
    port = localgalaxy.free_port()
    command = [str(VENV_BIN / "uvicorn"), "--factory", "galaxy_cloud_storage.mount:factory", "--host", HOST, "--port", str(port)]
    env = {
        "GALAXY_CONFIG_FILE": galaxy_yml,
        "VIRTUAL_ENV": str(VENV_BIN.parent),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    process = localgalaxy.start(command, str(work / "galaxy.log"), str(gx_dir), env)
    return process, f"http://{HOST}:{port}", galaxy_yml


# -- rclone ----------------------------------------------------------------------------------------


def run_rclone(args: list[str], remote) -> None:
    done = subprocess.run(["rclone", *args, *remote.extra_args, "-q"], env=remote.env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"rclone {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")


# -- the bench -------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args, work: Path):
        self.args = args
        self.work = work
        self.provider = args.provider
        self.results: dict = {"provider": self.provider, "measurements": {}, "checks": []}
        self.services: list = []
        self.cloud = None

    # setup

    def start_services(self) -> None:
        say(f"starting the local {self.provider} cloud (scripts/local_clouds.py)")
        self.cloud = start_cloud(self.provider, str(self.work / "cloud"))
        self.bucket = self.cloud.bucket
        self.reference = references.reference_for(self.cloud)
        self.results["reference"] = {"name": self.reference.sdk, **self.reference.describe(), "authorization": self.cloud.mode}
        say(f"{self.provider}: bucket {self.bucket}, authorization {self.cloud.mode}, reference {self.reference.sdk}")

        say("starting Galaxy with the plugin (uvicorn galaxy_cloud_storage.mount:factory, local runner)")
        self.galaxy_started = time.monotonic()
        self.galaxy_process, self.galaxy_url, self.galaxy_yml = start_galaxy(self.work, self.provider, self.cloud.settings)
        self.services.append(self.galaxy_process)

    def prepare_data(self) -> None:
        say("writing the data (os.urandom) while Galaxy starts")
        self.loads = [load for load in workloads(self.args.scale, self.args.small_count) if load.name in self.args.workloads]
        self.warmup, self.tiny = make_data(self.work, self.loads, 16 * KiB, self.reference.fingerprint)
        say(f"putting it into the bucket with {self.reference.sdk}")
        everything = [obj for load in self.loads for obj in load.objects] + [self.warmup, self.tiny]
        started = time.monotonic()
        self.reference.upload_all([(o.path, o.key) for o in everything])
        self.results["setup_upload_s"] = round(time.monotonic() - started, 2)

    def connect_galaxy(self) -> None:
        localgalaxy.wait_until_up(self.galaxy_url, self.galaxy_process, timeout=900)
        took = time.monotonic() - self.galaxy_started
        say(f"Galaxy answers at {self.galaxy_url} ({took:.0f} s after start)")
        self.results["galaxy_start_s"] = round(took, 1)
        api_key = localgalaxy.user_api_key(self.galaxy_url, localgalaxy.admin_key(self.galaxy_yml), EMAIL, "bench-password-1")
        self.gx = Galaxy(self.galaxy_url, api_key, self.args.poll)
        record = self.gx.ok("POST", "cloud/authz", json={"provider": self.provider, "config": self.cloud.authz_config})
        self.authz_id = record["id"]

    # plugin

    def timed_call(self, action: str, label: str, payload: dict) -> tuple:
        """POST cloud/storage/<action>: its answer, when it was sent and how long the call took."""
        t0 = time.monotonic()
        response = self.gx.call("POST", f"cloud/storage/{action}", json=payload)
        api_s = time.monotonic() - t0
        if response.status_code != 200:
            raise RuntimeError(f"{action} {label}: {response.status_code} {response.text[:500]}")
        return response.json(), t0, api_s

    def plugin_get(self, keys: list[str], label: str, watch: bool = False, total_bytes: int = 0) -> dict:
        history_id = self.gx.new_history(f"bench {label}")
        watcher = JobProcessWatcher(self.galaxy_process.pid, total_bytes) if watch else None
        if watcher:
            watcher.start()
        payload = {"history_id": history_id, "authz_id": self.authz_id, "bucket": self.bucket, "objects": keys}
        summaries, t0, api_s = self.timed_call("get", label, payload)
        job_id = summaries[0]["job_id"]
        states = self.gx.wait_job(job_id, t0)
        datasets = self.gx.wait_datasets(history_id, len(keys))
        total_s = time.monotonic() - t0
        result = {
            "total_s": round(total_s, 3), "api_s": round(api_s, 3), "job_states_s": states,
            "history_id": history_id, "job_id": job_id, "dataset_ids": [s["id"] for s in summaries],
            "dataset_states": sorted({d["state"] for d in datasets}),
            "extensions": sorted({d["extension"] for d in datasets}),
        }  # fmt: skip
        if watcher:
            result["process"] = process_summary(watcher.stop(), t0, "get")
        result["job"] = self.gx.job_details(job_id)
        if result["job"]["state"] != "ok" or result["dataset_states"] != ["ok"]:
            raise RuntimeError(f"plugin get {label} failed: {json.dumps(result, indent=1)[:3000]}")
        return result

    def name_for_sending(self, history_id: str, dataset_ids: list[str], objects: list[SourceObject]) -> None:
        """A sent object is named after its dataset, which is named after the object it came from:
        renamed, the plugin's sends land under bench/send/plugin/ instead of beside the sources."""
        for dataset_id, obj in zip(dataset_ids, objects):
            self.gx.ok("PUT", f"histories/{history_id}/contents/{dataset_id}", json={"name": send_key("plugin", obj.key)})

    def plugin_send(self, dataset_ids: list[str], label: str) -> dict:
        history_id = self.history_of[label]
        watcher = JobProcessWatcher(self.galaxy_process.pid)
        watcher.start()
        payload = {"history_id": history_id, "authz_id": self.authz_id, "bucket": self.bucket, "dataset_ids": dataset_ids}
        body, t0, api_s = self.timed_call("send", label, payload)
        if body["failed_dataset_labels"]:
            raise RuntimeError(f"send {label} refused some datasets: {body['failed_dataset_labels']}")
        labels = [json.loads(item) for item in body["sent_dataset_labels"]]
        states = self.gx.wait_job(labels[0]["job_id"], t0)
        total_s = time.monotonic() - t0
        result = {
            "total_s": round(total_s, 3), "api_s": round(api_s, 3), "job_states_s": states,
            "job_id": labels[0]["job_id"], "objects": [label["object"] for label in labels],
            "process": process_summary(watcher.stop(), t0, "send"),
            "job": self.gx.job_details(labels[0]["job_id"]),
        }  # fmt: skip
        if result["job"]["state"] != "ok":
            raise RuntimeError(f"plugin send {label} failed: {json.dumps(result, indent=1)[:3000]}")
        return result

    # checks (never timed)

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        self.results["checks"].append({"what": what, "ok": ok, "detail": detail})
        if not ok:
            say(f"CHECK FAILED: {what} {detail}")

    def verify_files(self, what: str, pairs: list[tuple[SourceObject, str]]) -> None:
        if self.args.no_verify:
            return
        bad = [obj.key for obj, path in pairs if os.path.getsize(path) != obj.size or sha256_file(path) != obj.sha256]
        self.check(f"{what}: bytes identical (sha256)", not bad, ", ".join(bad[:5]))

    def verify_plugin_datasets(self, what: str, load: Workload, dataset_ids: list[str]) -> None:
        if self.args.no_verify:
            return
        pairs = []
        for obj, dataset_id in zip(load.objects, dataset_ids):
            details = self.gx.ok("GET", f"datasets/{dataset_id}", params={"keys": "file_name,file_size"})
            pairs.append((obj, details["file_name"]))
        self.verify_files(what, pairs)

    def verify_objects(self, what: str, keys: list[str], objects: list[SourceObject], same_parts: bool) -> None:
        """Sizes, and the server's fingerprint where it has one, of what a copier sent. rclone's
        parts differ from the plugin's, and so may the fingerprint: ``same_parts`` False checks sizes only."""
        if self.args.no_verify:
            return
        bad, compared = [], 0
        for key, obj in zip(keys, objects):
            size, fingerprint = self.reference.head(key)
            if same_parts and obj.fingerprint is not None:
                compared += 1
            if size != obj.size or (same_parts and obj.fingerprint is not None and fingerprint != obj.fingerprint):
                bad.append(f"{key} ({size} bytes, fingerprint {fingerprint})")
        checked = f"sizes and {compared} fingerprints" if compared else "sizes"
        self.check(f"{what}: {checked} as sent", not bad, ", ".join(bad[:5]))

    # measurements

    def record(self, name: str, value) -> None:
        self.results["measurements"][name] = value

    def fixed_overhead(self) -> None:
        say("warm-up: one plugin get (not counted)")
        self.record("warmup_get", self.plugin_get([self.warmup.key], "warm-up"))
        runs = []
        for i in range(self.args.tiny_repeat):
            runs.append(self.plugin_get([self.tiny.key], f"tiny {i}", watch=True, total_bytes=self.tiny.size))
            say(f"tiny object (16 KiB) get #{i + 1}: {runs[-1]['total_s']:.2f} s")
        self.tiny_s = statistics.median(r["total_s"] for r in runs)
        self.record("tiny_get", {"runs": runs, "median_s": self.tiny_s})
        # The same for a send: its job has no sniffing, so its fixed cost differs from a get's.
        self.history_of["tiny"] = runs[0]["history_id"]
        self.name_for_sending(runs[0]["history_id"], runs[0]["dataset_ids"], [self.tiny])
        sends = []
        for i in range(self.args.tiny_repeat):
            sends.append(self.plugin_send(runs[0]["dataset_ids"], "tiny"))
            self.reference.delete_prefix(SEND_PREFIX)
            say(f"tiny object (16 KiB) send #{i + 1}: {sends[-1]['total_s']:.2f} s")
        self.record("tiny_send", {"runs": sends, "median_s": statistics.median(r["total_s"] for r in sends)})

    def api_latency(self) -> None:
        c = next((load for load in self.loads if load.name == "c"), None)
        if c is None or self.args.api_repeat < 1:
            return
        keys = [obj.key for obj in c.objects[:100]]
        runs = []
        for i in range(self.args.api_repeat):
            result = self.plugin_get(keys, f"api-{len(keys)} {i}")
            runs.append(result["api_s"])
            say(f"API call, get of {len(keys)} objects #{i + 1}: {result['api_s']:.3f} s (its job took {result['total_s']:.1f} s)")
        self.record("api_get_100", {"runs_s": runs, "median_s": statistics.median(runs), "objects": len(keys)})
        self.record("api_diagnosis", self.diagnose_api(keys))

    def diagnose_api(self, keys: list[str]) -> dict:
        """What the get route does besides Galaxy's database work, timed from here: building the
        plugin's backend (with credentials minted as the route mints them: that exchange is part of
        the API call too) and the existence checks of the bucket and of every object."""
        from galaxy_cloud_storage.providers import storage_backend

        mints, builds, heads = [], [], []
        for _ in range(3):
            started = time.monotonic()
            credentials, config = references.mint_credentials(self.cloud)
            mints.append(round(time.monotonic() - started, 3))
            started = time.monotonic()
            backend = storage_backend(self.provider, self.cloud.settings, config, credentials)
            builds.append(round(time.monotonic() - started, 3))
            started = time.monotonic()
            backend.check_bucket(self.bucket)
            backend.stat_many(self.bucket, keys)
            heads.append(round(time.monotonic() - started, 3))
        tiny_api = statistics.median(r["api_s"] for r in self.results["measurements"]["tiny_get"]["runs"])
        diagnosis = {"credentials_s": mints, "backend_build_s": builds, "existence_checks_s": heads, "existence_check": "stat_many", "api_1_object_s": tiny_api}
        say(f"API diagnosis: credentials {mints} s, backend build {builds} s, bucket + {len(keys)} objects checked {heads} s, API call for 1 object {tiny_api:.3f} s")
        return diagnosis

    def fresh_reference(self) -> None:
        """A client with freshly minted credentials per workload (tokens expire), built before timing."""
        self.reference.close()
        self.reference = references.reference_for(self.cloud)

    def rclone_remote(self):
        if self.args.no_rclone:
            return references.Remote(unavailable="--no-rclone")
        return self.reference.rclone(self.work)

    def get_workload(self, load: Workload) -> None:
        keys = [obj.key for obj in load.objects]
        figures: dict = {}
        for rep in range(self.args.repeat):
            result = self.plugin_get(keys, f"{load.name} #{rep}", watch=True, total_bytes=load.total)
            figures.setdefault("plugin", []).append(result)
            self.history_of[load.name] = result["history_id"]
            self.datasets_of[load.name] = result["dataset_ids"]
            self.verify_plugin_datasets(f"get {load.name} plugin", load, result["dataset_ids"])
            say(f"get {load.name} ({load.label}) plugin: {result['total_s']:.2f} s")

            self.fresh_reference()
            dest = self.work / "dl" / "sdk" / load.name
            dest.mkdir(parents=True, exist_ok=True)
            pairs = [(o.key, str(dest / Path(o.key).name)) for o in load.objects]
            started = time.monotonic()
            self.reference.download_all(pairs)
            took = time.monotonic() - started
            figures.setdefault("sdk", []).append({"total_s": round(took, 3)})
            self.verify_files(f"get {load.name} {self.reference.sdk}", [(o, path) for o, (_, path) in zip(load.objects, pairs)])
            shutil.rmtree(dest)
            say(f"get {load.name} ({load.label}) {self.reference.sdk}: {took:.2f} s")

            if self.remote.env:
                dest = self.work / "dl" / "rclone" / load.name
                dest.mkdir(parents=True, exist_ok=True)
                started = time.monotonic()
                run_rclone(["copy", f"{self.remote.name}:{self.bucket}/{load.prefix}", str(dest)], self.remote)
                took = time.monotonic() - started
                figures.setdefault("rclone", []).append({"total_s": round(took, 3)})
                self.verify_files(f"get {load.name} rclone", [(o, str(dest / Path(o.key).name)) for o in load.objects])
                shutil.rmtree(dest)
                say(f"get {load.name} ({load.label}) rclone: {took:.2f} s")
        self.record(f"get_{load.name}", summarise(figures, load))

    def send_workload(self, load: Workload) -> None:
        figures: dict = {}
        self.name_for_sending(self.history_of[load.name], self.datasets_of[load.name], load.objects)
        for rep in range(self.args.repeat):
            result = self.plugin_send(self.datasets_of[load.name], load.name)
            figures.setdefault("plugin", []).append(result)
            expected = [send_key("plugin", o.key) for o in load.objects]
            self.check(f"send {load.name} plugin: objects named after the renamed datasets", result["objects"] == expected, str(result["objects"][:3]))
            self.verify_objects(f"send {load.name} plugin", result["objects"], load.objects, same_parts=True)
            self.reference.delete_prefix(SEND_PREFIX)
            say(f"send {load.name} ({load.label}) plugin: {result['total_s']:.2f} s")

            self.fresh_reference()
            pairs = [(o.path, send_key("sdk", o.key)) for o in load.objects]
            started = time.monotonic()
            self.reference.upload_all(pairs)
            took = time.monotonic() - started
            figures.setdefault("sdk", []).append({"total_s": round(took, 3)})
            self.verify_objects(f"send {load.name} {self.reference.sdk}", [key for _, key in pairs], load.objects, same_parts=True)
            self.reference.delete_prefix(SEND_PREFIX)
            say(f"send {load.name} ({load.label}) {self.reference.sdk}: {took:.2f} s")

            if self.remote.env:
                started = time.monotonic()
                run_rclone(["copy", str(self.work / "src" / load.name), f"{self.remote.name}:{self.bucket}/{send_key('rclone', load.prefix)}"], self.remote)
                took = time.monotonic() - started
                figures.setdefault("rclone", []).append({"total_s": round(took, 3)})
                self.verify_objects(f"send {load.name} rclone", [send_key("rclone", o.key) for o in load.objects], load.objects, same_parts=False)
                self.reference.delete_prefix(SEND_PREFIX)
                say(f"send {load.name} ({load.label}) rclone: {took:.2f} s")
        self.record(f"send_{load.name}", summarise(figures, load))

    def run(self) -> dict:
        started = time.monotonic()
        self.results.update(
            started=datetime.now().isoformat(timespec="seconds"), scale=self.args.scale, repeat=self.args.repeat,
            cpus=os.cpu_count(), load_average_at_start=os.getloadavg(), python=sys.version.split()[0],
            plugin_settings={"objects_in_parallel": plugin_engine.DEFAULT_WORKERS},
        )  # fmt: skip
        self.history_of: dict = {}
        self.datasets_of: dict = {}
        self.start_services()
        self.remote = self.rclone_remote()
        self.results["rclone"] = {
            "version": subprocess.run(["rclone", "version"], capture_output=True, text=True).stdout.splitlines()[0] if self.remote.env else None,
            "remote": self.remote.note, "unavailable": self.remote.unavailable or None,
        }  # fmt: skip
        if self.remote.unavailable:
            say(f"rclone: not run ({self.remote.unavailable})")
        self.prepare_data()
        self.results["workloads"] = {load.name: {"label": load.label, "count": load.count, "size": load.size} for load in self.loads}
        self.connect_galaxy()
        self.fixed_overhead()
        self.api_latency()
        for load in self.loads:
            self.get_workload(load)
        for load in self.loads:
            self.send_workload(load)
        self.results["load_average_at_end"] = os.getloadavg()
        self.results["bench_s"] = round(time.monotonic() - started, 1)
        return self.results

    def stop(self) -> None:
        for process in reversed(self.services):
            localgalaxy.stop(process)
        if getattr(self, "reference", None) is not None:
            self.reference.close()
        if self.cloud is not None:
            self.cloud.stop()


def summarise(figures: dict, load: Workload) -> dict:
    out = {"bytes": load.total}
    for tool, runs in figures.items():
        median = statistics.median(r["total_s"] for r in runs)
        out[tool] = {"median_s": median, "MiB_per_s": round(load.total / MiB / median, 1) if median else None, "runs": runs}
    return out


# -- report ----------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def breakdown(run: dict) -> list[str]:
    """Where the plugin's time went, from the watcher's view of the job's processes."""
    p = run.get("process")
    lines = []
    if p:
        moved = f", all bytes written at {p['bytes_written_s']} s" if p["bytes_written_s"] is not None else ""
        sniff = f"sniffing step from {p['datatypes_started_s']} to {p['datatypes_exited_s']} s; " if p.get("datatypes_started_s") is not None else ""
        lines.append(
            f"API call {run['api_s']} s; transfer process from {p['started_s']} s to {p['exited_s']} s{moved}; {sniff}"
            f"Galaxy's metadata step from {p['metadata_started_s']} to {p['metadata_exited_s']} s; job ok at {run['job_states_s'].get('ok')} s"
        )
        rss = f"peak RSS {p['peak_rss_mib']} MiB"
        if p["peak_rss_until_bytes_written_mib"] is not None:
            rss += f" ({p['peak_rss_until_bytes_written_mib']} MiB until all bytes were written)"
        sniff = f"sniffing step peak RSS {p['datatypes_peak_rss_mib']} MiB; " if p.get("datatypes_peak_rss_mib") is not None else ""
        lines.append(f"transfer process: {rss}, up to {p['max_threads']} threads; {sniff}metadata step peak RSS {p['metadata_peak_rss_mib']} MiB")
    else:
        lines.append(f"API call {run['api_s']} s; job states first seen at {run['job_states_s']}")
    return lines


def report(results: dict) -> list[str]:
    m = results["measurements"]
    plugin = results.get("plugin", {})
    provider = results.get("provider", "aws")  # results of s3_bench.py before --provider were AWS's
    sdk = results.get("reference", {}).get("name", "boto3")
    lines = [
        f"{provider} bench, scale {results['scale']}, {results['cpus']} CPUs, load average at start {results['load_average_at_start'][0]:.2f}, at end {results.get('load_average_at_end', [0])[0]:.2f}",
        f"plugin: commit {plugin.get('commit', '?')[:10]}{' + uncommitted changes in lib/' if plugin.get('lib_changes') else ''}, from {plugin.get('imported_from')}",
    ]
    if "reference" in results:
        ref = results["reference"]
        lines.append(f"reference: {ref['sdk']}, parts of {human(ref['part_size'])}, {ref['parts_in_parallel']} per object in parallel; authorization {ref['authorization']}")
    rclone = results.get("rclone")
    if isinstance(rclone, dict) and rclone.get("unavailable"):
        lines.append(f"rclone: not run ({rclone['unavailable']})")
    elif isinstance(rclone, dict):
        lines.append(f"rclone: {rclone.get('version')}: {rclone.get('remote', '')}")
    elif rclone:  # results of s3_bench.py before --provider: the version only
        lines.append(f"rclone: {rclone}")
    tiny = m["tiny_get"]["median_s"]
    lines.append(f"plugin get of one 16 KiB object (fixed job overhead): {tiny:.2f} s (runs: {', '.join(str(r['total_s']) for r in m['tiny_get']['runs'])})")
    tiny_runs = sorted(m["tiny_get"]["runs"], key=lambda r: r["total_s"])
    lines.extend("    " + line for line in breakdown(tiny_runs[len(tiny_runs) // 2]))
    if "tiny_send" in m:
        lines.append(f"plugin send of one 16 KiB dataset: {m['tiny_send']['median_s']:.2f} s (runs: {', '.join(str(r['total_s']) for r in m['tiny_send']['runs'])})")
    ratios = {}
    for direction in ("get", "send"):
        for name, meta in results["workloads"].items():
            entry = m.get(f"{direction}_{name}")
            if not entry:
                continue
            p, r = entry["plugin"]["median_s"], entry.get("rclone", {}).get("median_s")
            b = entry.get("sdk", entry.get("boto3"))["median_s"]
            row = f"{direction} ({name}) {meta['label']:>14}: plugin {p:7.2f} s  {sdk} {b:7.2f} s"
            row += f"  rclone {r:7.2f} s  plugin/rclone {p / r:5.2f}" if r else ""
            lines.append(row)
            own = m[f"tiny_{direction}"]["median_s"] if f"tiny_{direction}" in m else tiny
            negative = "  (negative: this job's fixed cost is below a get's; the next line subtracts its own)"
            if name in ("a", "b"):
                ratio = (p - tiny) / b
                ratios[f"{direction}_{name}"] = ratio
                note = ""
                if ratio < 0:
                    note = negative if direction == "send" else "  (negative: the fixed overhead varies more than this transfer takes; run at a larger scale)"
                judged = "n/a" if ratio < 0 else verdict(ratio <= TARGETS["ratio_large"])
                lines.append(f"    (plugin - tiny get) / {sdk} = {ratio:.2f}   target <= {TARGETS['ratio_large']}  {judged}{note}")
                if direction == "send":
                    own_ratio = (p - own) / b
                    ratios[f"{direction}_{name}_own_overhead"] = own_ratio
                    judged = "n/a" if own_ratio < 0 else verdict(own_ratio <= TARGETS["ratio_large"])
                    lines.append(f"    (plugin - tiny send) / {sdk} = {own_ratio:.2f}   target <= {TARGETS['ratio_large']}  {judged}  (a send job's own fixed overhead, {own:.2f} s)")
            else:
                ratio = p / tiny
                ratios[f"{direction}_{name}"] = ratio
                lines.append(f"    plugin / tiny get = {ratio:.2f}   target <= {TARGETS['ratio_small']}  {verdict(ratio <= TARGETS['ratio_small'])}")
                if direction == "send":
                    ratios[f"{direction}_{name}_own_overhead"] = p / own
                    lines.append(f"    plugin / tiny send = {p / own:.2f}   target <= {TARGETS['ratio_small']}  {verdict(p / own <= TARGETS['ratio_small'])}  (a send job's own fixed overhead, {own:.2f} s)")
            process = entry["plugin"]["runs"][0].get("process") or {}
            end_mark = process.get("bytes_written_s") if direction == "get" else process.get("exited_s")
            if end_mark is not None and process.get("started_s") is not None:
                in_job = end_mark - process["started_s"]
                ratios[f"{direction}_{name}_in_job"] = in_job / b
                what = "start to all bytes written" if direction == "get" else "start to exit"
                lines.append(f"    in the job: transfer process {what} {in_job:.2f} s / {sdk} = {in_job / b:.2f}   (for information: the plugin's transfer code, its start-up included, without Galaxy)")
            run = entry["plugin"]["runs"][0]
            lines.extend("    " + line for line in breakdown(run))
    get_a = m.get("get_a")
    if get_a and get_a["plugin"]["runs"][0].get("process"):
        peak = max(run["process"]["peak_rss_mib"] for run in get_a["plugin"]["runs"])
        ratios["peak_rss_a_mib"] = peak
        lines.append(f"peak RSS of the transfer process, get (a): {peak} MiB   target <= {TARGETS['peak_rss_mib']:.0f} MiB  {verdict(peak <= TARGETS['peak_rss_mib'])}")
    if "api_get_100" in m:
        api = m["api_get_100"]["median_s"]
        count = m["api_get_100"].get("objects", 100)
        ratios["api_get_100_s"] = api
        judged = verdict(api < TARGETS["api_100_s"]) if count == 100 else f"n/a ({count} objects only)"
        lines.append(f"API call, get of {count} objects: {api:.3f} s (runs: {m['api_get_100']['runs_s']})   target < {TARGETS['api_100_s']} s  {judged}")
        d = m.get("api_diagnosis")
        if d:
            minted = f"credentials minted {d['credentials_s']} s, " if "credentials_s" in d else ""
            lines.append(
                f"    of which, timed from the bench: {minted}building the backend {d['backend_build_s']} s (first, then warm), "
                f"the bucket + existence of the {count} objects ({d['existence_check']}) {d['existence_checks_s']} s; API call for 1 object {d['api_1_object_s']} s"
            )
    failed = [c for c in results["checks"] if not c["ok"]]
    lines.append(f"checks: {len(results['checks']) - len(failed)} of {len(results['checks'])} passed" + (f"; FAILED: {[c['what'] for c in failed]}" if failed else ""))
    results["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    results["targets"] = TARGETS
    return lines


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", choices=PROVIDERS, default="aws", help="which cloud (default aws)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the sizes of workloads (a) and (b) (default 1: 1 GiB and 8 x 128 MiB)")
    parser.add_argument("--workloads", default="abc", help="which of a, b, c to run (default abc)")
    parser.add_argument("--small-count", type=int, default=200, help="objects in workload (c) (default 200; fewer for a smoke test only: the target is for 200)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each workload per copier; the median counts (default 1)")
    parser.add_argument("--tiny-repeat", type=int, default=3, help="runs of the 16 KiB get; the median is the fixed overhead (default 3)")
    parser.add_argument("--api-repeat", type=int, default=3, help="runs of the 100-object API call (default 3)")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between polls of the job's state (default 0.1)")
    parser.add_argument("--no-rclone", action="store_true", help="skip rclone (it is skipped anyway where it cannot reach the emulator)")
    parser.add_argument("--no-verify", action="store_true", help="skip the byte checks (they are never timed)")
    parser.add_argument("--no-snapshot", action="store_true", help="use lib/ as it is, not a copy taken at the start")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, Galaxy's database)")
    parser.add_argument("--workdir", help="where the cloud, Galaxy and the data live (default: a new temporary directory)")
    parser.add_argument("--output", help="the JSON results file (default bench/results-<timestamp>.json)")
    parser.add_argument("--report", metavar="RESULTS_JSON", help="print the report of an earlier run's JSON, and run nothing")
    args = parser.parse_args(argv)
    if args.report:
        print("\n".join(report(json.loads(Path(args.report).read_text()))))
        return 0
    if not args.no_rclone and shutil.which("rclone") is None:
        parser.error("rclone is not on PATH (apt-get install rclone), or pass --no-rclone")

    # Background jobs of a non-interactive shell ignore SIGINT: take it back, and SIGTERM too, so
    # that either stops Galaxy, its jobs and the cloud's servers on the way out.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupted)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="gcs-bench-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    plugin = snapshot_plugin(work) if not args.no_snapshot else {"snapshot": None}
    plugin["imported_from"] = import_plugin()
    # moto spools every object to a temporary file, Galaxy and the jobs write theirs: all in here.
    # (Set before the cloud starts: its servers inherit it.)
    (work / "tmp").mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(work / "tmp")
    tempfile.tempdir = None
    say(f"work directory {work}")
    bench = Bench(args, work)
    bench.results["plugin"] = plugin
    try:
        results = bench.run()
    except BaseException:
        say(f"failed; logs: {work / 'galaxy.log'}, {work / 'cloud'}")
        args.keep = True
        raise
    finally:
        bench.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    lines = report(results)
    output = Path(args.output or HERE / f"results-{args.provider}-{datetime.now():%Y%m%d-%H%M%S}.json")
    output.write_text(json.dumps(results, indent=1, default=str))
    print("\n" + "\n".join(lines), flush=True)
    print(f"\nresults: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

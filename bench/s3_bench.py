"""S3 get/send throughput of the plugin against boto3's transfer manager and rclone, in one run.

One moto server (S3 + STS + IAM, IAM enforcement on, started here through scripts/moto_aws.py) and
one Galaxy 26.1 with the plugin (uvicorn, ``galaxy_cloud_storage.mount:factory``, the local job
runner, started here through scripts/localgalaxy.py) serve every measurement, so the figures and
their ratios come from the same machine at the same time. Run it from the repository's venv:

    .venv/bin/python bench/s3_bench.py --scale 0.1      # a quick run (~12 min)
    .venv/bin/python bench/s3_bench.py                  # full size: 1 GiB, 8 x 128 MiB, 200 x 16 KiB (~16 min)

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import (
    dataclass,
    field,
)
from datetime import datetime
from pathlib import Path
from typing import Optional

import boto3
import requests
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "scripts"))

import localgalaxy  # noqa: E402
import moto_aws  # noqa: E402

# The plugin's modules, imported by import_plugin() once the snapshot (if any) is on sys.path.
plugin_aws = plugin_engine = tool_conf_xml = None

KiB, MiB, GiB = 1024, 1024**2, 1024**3
HOST = "127.0.0.1"
EMAIL = "bench@example.org"
SRC_BUCKET = "gcs-bench-src"
SEND_BUCKETS = {tool: f"gcs-bench-send-{tool}" for tool in ("plugin", "boto3", "rclone")}
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
    global plugin_aws, plugin_engine, tool_conf_xml
    import galaxy_cloud_storage
    from galaxy_cloud_storage.providers import aws as plugin_aws
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
    etag: str  # the ETag S3 gives it when sent in the plugin's parts (boto3 with the plugin's TransferConfig)


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
        return f"{self.name}/"


def workloads(scale: float) -> list[Workload]:
    """(a) and (b) measure bandwidth: ``scale`` shrinks them. (c) measures the cost per object, so it
    stays 200 x 16 KiB whatever the scale."""
    a, b = max(1, int(GiB * scale)), max(1, int(128 * MiB * scale))
    return [
        Workload("a", f"1 x {human(a)}", 1, a),
        Workload("b", f"8 x {human(b)}", 8, b),
        Workload("c", "200 x 16 KiB", 200, 16 * KiB),
    ]


def human(size: float) -> str:
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor:
            return f"{size / factor:.4g} {unit}"
    return f"{size} B"


def multipart_etag(path: str, size: int, part_size: int) -> str:
    """What S3 answers as the ETag of ``path`` uploaded by s3transfer with ``part_size`` parts."""
    with open(path, "rb") as fh:
        if size < part_size:
            return hashlib.md5(fh.read()).hexdigest()
        digests = []
        while chunk := fh.read(part_size):
            digests.append(hashlib.md5(chunk).digest())
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


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
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 * MiB):
            digest.update(block)
    return digest.hexdigest()


def make_data(work: Path, loads: list[Workload], tiny: int) -> list[SourceObject]:
    """Local files for every workload (kept: boto3 and rclone send them), plus the tiny object."""
    extra = []
    for load in loads:
        folder = work / "src" / load.name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(load.count):
            path = str(folder / f"obj-{i:03d}")
            sha = make_file(path, load.size)
            etag = multipart_etag(path, load.size, plugin_aws.PART_SIZE)
            load.objects.append(SourceObject(f"{load.prefix}obj-{i:03d}", path, load.size, sha, etag))
    (work / "src" / "tiny").mkdir(parents=True, exist_ok=True)
    for name in ("warmup", "tiny"):
        path = str(work / "src" / "tiny" / name)
        sha = make_file(path, tiny)
        extra.append(SourceObject(f"tiny/{name}", path, tiny, sha, multipart_etag(path, tiny, plugin_aws.PART_SIZE)))
    return extra


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


def start_galaxy(work: Path, moto_url: str) -> tuple[subprocess.Popen, str, str]:
    gx_dir = work / "galaxy"
    gx_dir.mkdir()
    plugin_tool_conf = gx_dir / "cloud_storage_tool_conf.xml"
    plugin_tool_conf.write_text(tool_conf_xml())
    plugin_config = {
        "providers": {"aws": {"s3_endpoint_url": moto_url, "sts_endpoint_url": moto_url, "allow_stored_secrets": True}}
    }
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


# -- the three copiers -----------------------------------------------------------------------------


@dataclass
class Creds:
    key_id: str
    secret: str


def plugin_like_client(endpoint: str, creds: Creds):
    """A boto3 S3 client configured as providers/aws.py configures the plugin's."""
    config = Config(
        retries=plugin_aws.RETRIES, signature_version="s3v4", connect_timeout=10,
        max_pool_connections=8 * plugin_aws.CONCURRENCY, s3={"addressing_style": "path"},
    )  # fmt: skip
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=config,
        aws_access_key_id=creds.key_id, aws_secret_access_key=creds.secret,
    )  # fmt: skip


def plugin_transfer_config() -> TransferConfig:
    return TransferConfig(
        multipart_threshold=plugin_aws.PART_SIZE, multipart_chunksize=plugin_aws.PART_SIZE,
        max_concurrency=plugin_aws.CONCURRENCY, use_threads=True, preferred_transfer_client="classic",
    )  # fmt: skip


def boto3_parallel(work_items: list, do) -> None:
    """Objects in parallel as the plugin's engine runs them: DEFAULT_WORKERS at a time."""
    workers = max(1, min(plugin_engine.DEFAULT_WORKERS, len(work_items)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(do, work_items))


def rclone_env(work: Path, endpoint: str, creds: Creds) -> dict:
    empty = work / "rclone.conf"
    empty.touch()
    # Only the remote's own settings: this machine's AWS_CA_BUNDLE & co. would make rclone look
    # for a TLS bundle even for a plain-HTTP endpoint, and fail.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    return {
        **inherited,
        "RCLONE_CONFIG": str(empty),
        "RCLONE_CONFIG_MOTO_TYPE": "s3",
        "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
        "RCLONE_CONFIG_MOTO_ENDPOINT": endpoint,
        "RCLONE_CONFIG_MOTO_REGION": "us-east-1",
        "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": creds.key_id,
        "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": creds.secret,
        "RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE": "true",
    }


def run_rclone(args: list[str], env: dict) -> None:
    done = subprocess.run(["rclone", *args, "-q"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"rclone {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")


# -- the bench -------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args, work: Path):
        self.args = args
        self.work = work
        self.results: dict = {"measurements": {}, "checks": []}
        self.services: list = []

    # setup

    def start_services(self) -> None:
        args, work = self.args, self.work
        moto_port = localgalaxy.free_port()
        self.moto_url = f"http://{HOST}:{moto_port}"
        say(f"starting moto (IAM enforcement on) at {self.moto_url}")
        moto = moto_aws.start(moto_port, str(work / "moto.log"), str(work))
        self.services.append(moto)
        moto_aws.wait_until_up(self.moto_url, moto)
        self.aws = moto_aws.make_admin(self.moto_url)
        self.admin_s3 = self.aws.client("s3")
        for bucket in (SRC_BUCKET, *SEND_BUCKETS.values()):
            self.aws.create_bucket(bucket)
        # One IAM user with a static key for all three copiers, allowed on the bench's buckets only.
        key_id, secret = self.aws.create_bucket_user("bench-user", "gcs-bench-*")
        self.creds = Creds(key_id, secret)

        say("starting Galaxy with the plugin (uvicorn galaxy_cloud_storage.mount:factory, local runner)")
        self.galaxy_started = time.monotonic()
        self.galaxy_process, self.galaxy_url, self.galaxy_yml = start_galaxy(work, self.moto_url)
        self.services.append(self.galaxy_process)

    def prepare_data(self) -> None:
        say("writing the data (os.urandom) while Galaxy starts")
        self.loads = [load for load in workloads(self.args.scale) if load.name in self.args.workloads]
        self.warmup, self.tiny = make_data(self.work, self.loads, 16 * KiB)
        say("putting it into the bucket with boto3")
        client = plugin_like_client(self.moto_url, self.creds)
        everything = [obj for load in self.loads for obj in load.objects] + [self.warmup, self.tiny]
        started = time.monotonic()
        boto3_parallel(everything, lambda o: client.upload_file(o.path, SRC_BUCKET, o.key, Config=plugin_transfer_config()))
        self.results["setup_upload_s"] = round(time.monotonic() - started, 2)

    def connect_galaxy(self) -> None:
        localgalaxy.wait_until_up(self.galaxy_url, self.galaxy_process, timeout=900)
        took = time.monotonic() - self.galaxy_started
        say(f"Galaxy answers at {self.galaxy_url} ({took:.0f} s after start)")
        self.results["galaxy_start_s"] = round(took, 1)
        api_key = localgalaxy.user_api_key(self.galaxy_url, localgalaxy.admin_key(self.galaxy_yml), EMAIL, "bench-password-1")
        self.gx = Galaxy(self.galaxy_url, api_key, self.args.poll)
        record = self.gx.ok("POST", "cloud/authz", json={"provider": "aws", "config": {"access_key_id": self.creds.key_id, "secret_access_key": self.creds.secret}})
        self.authz_id = record["id"]

    # plugin

    def plugin_get(self, keys: list[str], label: str, watch: bool = False, total_bytes: int = 0) -> dict:
        history_id = self.gx.new_history(f"bench {label}")
        watcher = JobProcessWatcher(self.galaxy_process.pid, total_bytes) if watch else None
        if watcher:
            watcher.start()
        payload = {"history_id": history_id, "authz_id": self.authz_id, "bucket": SRC_BUCKET, "objects": keys}
        t0 = time.monotonic()
        response = self.gx.call("POST", "cloud/storage/get", json=payload)
        api_s = time.monotonic() - t0
        if response.status_code != 200:
            raise RuntimeError(f"get {label}: {response.status_code} {response.text[:500]}")
        summaries = response.json()
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

    def plugin_send(self, dataset_ids: list[str], bucket: str, label: str, total_bytes: int) -> dict:
        history_id = self.history_of[label]
        watcher = JobProcessWatcher(self.galaxy_process.pid)
        watcher.start()
        payload = {"history_id": history_id, "authz_id": self.authz_id, "bucket": bucket, "dataset_ids": dataset_ids}
        t0 = time.monotonic()
        response = self.gx.call("POST", "cloud/storage/send", json=payload)
        api_s = time.monotonic() - t0
        if response.status_code != 200:
            raise RuntimeError(f"send {label}: {response.status_code} {response.text[:500]}")
        body = response.json()
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

    def verify_objects(self, what: str, bucket: str, keys: list[str], load: Workload, check_etag: bool) -> None:
        if self.args.no_verify:
            return
        bad = []
        for key, obj in zip(keys, load.objects):
            head = self.admin_s3.head_object(Bucket=bucket, Key=key)
            if head["ContentLength"] != obj.size or (check_etag and head["ETag"].strip('"') != obj.etag):
                bad.append(f"{key} ({head['ContentLength']} bytes, ETag {head['ETag']})")
        self.check(f"{what}: sizes{' and ETags' if check_etag else ''} as sent", not bad, ", ".join(bad[:5]))

    def empty_bucket(self, bucket: str) -> None:
        """Sent objects go once checked: moto keeps every object in a temporary file."""
        paginator = self.admin_s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.admin_s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})

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
        sends = []
        for i in range(self.args.tiny_repeat):
            sends.append(self.plugin_send(runs[0]["dataset_ids"], SEND_BUCKETS["plugin"], "tiny", self.tiny.size))
            self.empty_bucket(SEND_BUCKETS["plugin"])
            say(f"tiny object (16 KiB) send #{i + 1}: {sends[-1]['total_s']:.2f} s")
        self.record("tiny_send", {"runs": sends, "median_s": statistics.median(r["total_s"] for r in sends)})

    def api_latency(self) -> None:
        c = next((load for load in self.loads if load.name == "c"), None)
        keys = [obj.key for obj in c.objects[:100]] if c else None
        if keys is None:
            return
        runs = []
        for i in range(self.args.api_repeat):
            result = self.plugin_get(keys, f"api-100 {i}")
            runs.append(result["api_s"])
            say(f"API call, get of 100 objects #{i + 1}: {result['api_s']:.3f} s (its job took {result['total_s']:.1f} s)")
        self.record("api_get_100", {"runs_s": runs, "median_s": statistics.median(runs)})
        self.record("api_diagnosis", self.diagnose_api(keys))

    def diagnose_api(self, keys: list[str]) -> dict:
        """What the get route does besides Galaxy's database work, timed from here: building the
        plugin's S3 backend (cloudbridge provider + boto3 client) and HEAD of the bucket and of
        every object, as many at a time as the manager does."""
        from galaxy_cloud_storage.providers import storage_backend

        CHECK_WORKERS = 16  # the manager's HEADs in parallel, before backends had stat_many
        settings = {"s3_endpoint_url": self.moto_url, "allow_stored_secrets": True}
        credentials = {"access_key_id": self.creds.key_id, "secret_access_key": self.creds.secret}
        builds, heads = [], []
        for _ in range(3):
            started = time.monotonic()
            backend = storage_backend("aws", settings, {}, credentials)
            builds.append(round(time.monotonic() - started, 3))
            started = time.monotonic()
            backend.check_bucket(SRC_BUCKET)
            if hasattr(backend, "stat_many"):  # what the manager calls since 0d75e3c
                backend.stat_many(SRC_BUCKET, keys)
            else:
                with ThreadPoolExecutor(CHECK_WORKERS) as pool:
                    list(pool.map(lambda key: backend.stat(SRC_BUCKET, key), keys))
            heads.append(round(time.monotonic() - started, 3))
        tiny_api = statistics.median(r["api_s"] for r in self.results["measurements"]["tiny_get"]["runs"])
        diagnosis = {
            "backend_build_s": builds, "existence_checks_s": heads,
            "existence_check": "stat_many" if hasattr(backend, "stat_many") else f"{CHECK_WORKERS} HEADs at a time",
            "api_1_object_s": tiny_api,
        }  # fmt: skip
        say(f"API diagnosis: backend build {builds} s, bucket + 100 objects checked ({diagnosis['existence_check']}) {heads} s, API call for 1 object {tiny_api:.3f} s")
        return diagnosis

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

            client = plugin_like_client(self.moto_url, self.creds)
            dest = self.work / "dl" / "boto3" / load.name
            dest.mkdir(parents=True, exist_ok=True)
            config = plugin_transfer_config()
            started = time.monotonic()
            boto3_parallel(load.objects, lambda o: client.download_file(SRC_BUCKET, o.key, str(dest / Path(o.key).name), Config=config))
            took = time.monotonic() - started
            figures.setdefault("boto3", []).append({"total_s": round(took, 3)})
            self.verify_files(f"get {load.name} boto3", [(o, str(dest / Path(o.key).name)) for o in load.objects])
            shutil.rmtree(dest)
            say(f"get {load.name} ({load.label}) boto3: {took:.2f} s")

            if not self.args.no_rclone:
                dest = self.work / "dl" / "rclone" / load.name
                dest.mkdir(parents=True, exist_ok=True)
                started = time.monotonic()
                run_rclone(["copy", f"moto:{SRC_BUCKET}/{load.name}", str(dest)], self.rclone)
                took = time.monotonic() - started
                figures.setdefault("rclone", []).append({"total_s": round(took, 3)})
                self.verify_files(f"get {load.name} rclone", [(o, str(dest / Path(o.key).name)) for o in load.objects])
                shutil.rmtree(dest)
                say(f"get {load.name} ({load.label}) rclone: {took:.2f} s")
        self.record(f"get_{load.name}", summarise(figures, load))

    def send_workload(self, load: Workload) -> None:
        figures: dict = {}
        for rep in range(self.args.repeat):
            bucket = SEND_BUCKETS["plugin"]
            result = self.plugin_send(self.datasets_of[load.name], bucket, load.name, load.total)
            figures.setdefault("plugin", []).append(result)
            self.verify_objects(f"send {load.name} plugin", bucket, result["objects"], load, check_etag=True)
            self.empty_bucket(bucket)
            say(f"send {load.name} ({load.label}) plugin: {result['total_s']:.2f} s")

            bucket = SEND_BUCKETS["boto3"]
            client = plugin_like_client(self.moto_url, self.creds)
            config = plugin_transfer_config()
            started = time.monotonic()
            boto3_parallel(load.objects, lambda o: client.upload_file(o.path, bucket, o.key, Config=config))
            took = time.monotonic() - started
            figures.setdefault("boto3", []).append({"total_s": round(took, 3)})
            self.verify_objects(f"send {load.name} boto3", bucket, [o.key for o in load.objects], load, check_etag=True)
            self.empty_bucket(bucket)
            say(f"send {load.name} ({load.label}) boto3: {took:.2f} s")

            if not self.args.no_rclone:
                bucket = SEND_BUCKETS["rclone"]
                started = time.monotonic()
                run_rclone(["copy", str(self.work / "src" / load.name), f"moto:{bucket}/{load.name}", "--s3-no-check-bucket"], self.rclone)
                took = time.monotonic() - started
                figures.setdefault("rclone", []).append({"total_s": round(took, 3)})
                self.verify_objects(f"send {load.name} rclone", bucket, [o.key for o in load.objects], load, check_etag=False)
                self.empty_bucket(bucket)
                say(f"send {load.name} ({load.label}) rclone: {took:.2f} s")
        self.record(f"send_{load.name}", summarise(figures, load))

    def run(self) -> dict:
        started = time.monotonic()
        self.results.update(
            started=datetime.now().isoformat(timespec="seconds"), scale=self.args.scale, repeat=self.args.repeat,
            cpus=os.cpu_count(), load_average_at_start=os.getloadavg(), python=sys.version.split()[0],
            plugin_settings={"part_size": plugin_aws.PART_SIZE, "parts_in_parallel": plugin_aws.CONCURRENCY, "objects_in_parallel": plugin_engine.DEFAULT_WORKERS},
            rclone=None if self.args.no_rclone else subprocess.run(["rclone", "version"], capture_output=True, text=True).stdout.splitlines()[0],
        )  # fmt: skip
        self.history_of: dict = {}
        self.datasets_of: dict = {}
        self.start_services()
        self.prepare_data()
        self.results["workloads"] = {load.name: {"label": load.label, "count": load.count, "size": load.size} for load in self.loads}
        self.rclone = rclone_env(self.work, self.moto_url, self.creds)
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
    lines = [
        f"S3 bench, scale {results['scale']}, {results['cpus']} CPUs, load average at start {results['load_average_at_start'][0]:.2f}, at end {results.get('load_average_at_end', [0])[0]:.2f}",
        f"plugin: commit {plugin.get('commit', '?')[:10]}{' + uncommitted changes in lib/' if plugin.get('lib_changes') else ''}, from {plugin.get('imported_from')}",
    ]
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
            p, b, r = entry["plugin"]["median_s"], entry["boto3"]["median_s"], entry.get("rclone", {}).get("median_s")
            row = f"{direction} ({name}) {meta['label']:>14}: plugin {p:7.2f} s  boto3 {b:7.2f} s"
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
                lines.append(f"    (plugin - tiny get) / boto3 = {ratio:.2f}   target <= {TARGETS['ratio_large']}  {judged}{note}")
                if direction == "send":
                    own_ratio = (p - own) / b
                    ratios[f"{direction}_{name}_own_overhead"] = own_ratio
                    judged = "n/a" if own_ratio < 0 else verdict(own_ratio <= TARGETS["ratio_large"])
                    lines.append(f"    (plugin - tiny send) / boto3 = {own_ratio:.2f}   target <= {TARGETS['ratio_large']}  {judged}  (a send job's own fixed overhead, {own:.2f} s)")
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
                lines.append(f"    in the job: transfer process {what} {in_job:.2f} s / boto3 = {in_job / b:.2f}   (for information: the plugin's transfer code, its start-up included, without Galaxy)")
            run = entry["plugin"]["runs"][0]
            lines.extend("    " + line for line in breakdown(run))
    get_a = m.get("get_a")
    if get_a and get_a["plugin"]["runs"][0].get("process"):
        peak = max(run["process"]["peak_rss_mib"] for run in get_a["plugin"]["runs"])
        ratios["peak_rss_a_mib"] = peak
        lines.append(f"peak RSS of the transfer process, get (a): {peak} MiB   target <= {TARGETS['peak_rss_mib']:.0f} MiB  {verdict(peak <= TARGETS['peak_rss_mib'])}")
    if "api_get_100" in m:
        api = m["api_get_100"]["median_s"]
        ratios["api_get_100_s"] = api
        lines.append(f"API call, get of 100 objects: {api:.3f} s (runs: {m['api_get_100']['runs_s']})   target < {TARGETS['api_100_s']} s  {verdict(api < TARGETS['api_100_s'])}")
        d = m.get("api_diagnosis")
        if d:
            lines.append(
                f"    of which, timed from the bench: building the S3 backend {d['backend_build_s']} s (first, then warm), "
                f"HEAD of the bucket + existence of the 100 objects ({d['existence_check']}) {d['existence_checks_s']} s; API call for 1 object {d['api_1_object_s']} s"
            )
    failed = [c for c in results["checks"] if not c["ok"]]
    lines.append(f"checks: {len(results['checks']) - len(failed)} of {len(results['checks'])} passed" + (f"; FAILED: {[c['what'] for c in failed]}" if failed else ""))
    results["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    results["targets"] = TARGETS
    return lines


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the sizes of workloads (a) and (b) (default 1: 1 GiB and 8 x 128 MiB)")
    parser.add_argument("--workloads", default="abc", help="which of a, b, c to run (default abc)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each workload per copier; the median counts (default 1)")
    parser.add_argument("--tiny-repeat", type=int, default=3, help="runs of the 16 KiB get; the median is the fixed overhead (default 3)")
    parser.add_argument("--api-repeat", type=int, default=3, help="runs of the 100-object API call (default 3)")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between polls of the job's state (default 0.1)")
    parser.add_argument("--no-rclone", action="store_true", help="skip rclone")
    parser.add_argument("--no-verify", action="store_true", help="skip the byte checks (they are never timed)")
    parser.add_argument("--no-snapshot", action="store_true", help="use lib/ as it is, not a copy taken at the start")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, Galaxy's database)")
    parser.add_argument("--workdir", help="where moto, Galaxy and the data live (default: a new temporary directory)")
    parser.add_argument("--output", help="the JSON results file (default bench/results-<timestamp>.json)")
    parser.add_argument("--report", metavar="RESULTS_JSON", help="print the report of an earlier run's JSON, and run nothing")
    args = parser.parse_args()
    if args.report:
        print("\n".join(report(json.loads(Path(args.report).read_text()))))
        return 0
    if not args.no_rclone and shutil.which("rclone") is None:
        parser.error("rclone is not on PATH (apt-get install rclone), or pass --no-rclone")

    # Background jobs of a non-interactive shell ignore SIGINT: take it back, and SIGTERM too, so
    # that either stops Galaxy, its jobs and moto on the way out.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupted)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="gcs-bench-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    plugin = snapshot_plugin(work) if not args.no_snapshot else {"snapshot": None}
    plugin["imported_from"] = import_plugin()
    # moto spools every object to a temporary file, Galaxy and the jobs write theirs: all in here.
    (work / "tmp").mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(work / "tmp")
    tempfile.tempdir = None
    say(f"work directory {work}")
    bench = Bench(args, work)
    bench.results["plugin"] = plugin
    try:
        results = bench.run()
    except BaseException:
        say(f"failed; logs: {work / 'galaxy.log'}, {work / 'moto.log'}")
        args.keep = True
        raise
    finally:
        bench.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    lines = report(results)
    output = Path(args.output or HERE / f"results-{datetime.now():%Y%m%d-%H%M%S}.json")
    output.write_text(json.dumps(results, indent=1, default=str))
    print("\n" + "\n".join(lines), flush=True)
    print(f"\nresults: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Get/send throughput of the plugin against the cloud's own SDK and rclone, in one run, for one
provider (aws, azure, gcp, openstack).

One local cloud (galaxy_cloud_storage_testing/local_clouds.py: moto, Azurite, fake-gcs-server or a Swift cluster, with
its token endpoint) and one Galaxy 26.1 with the plugin (uvicorn, ``galaxy_cloud_storage.mount:factory``,
the local job runner, started here through galaxy_cloud_storage_testing/localgalaxy.py) serve every measurement, so the
figures and their ratios come from the same machine at the same time. The SDK and rclone use the
credentials a transfer job of the plugin gets for the same authorization (bench/references.py).
Run it from the repository's venv:

    .venv/bin/python bench/cloud_bench.py --provider azure --scale 0.1   # a quick run
    .venv/bin/python bench/cloud_bench.py --provider openstack           # full size: 1 GiB, 8 x 128 MiB, 200 x 16 KiB

bench/README.md says how to read the output. Nothing here is part of CI.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

from galaxy_client import EMAIL, Galaxy, start_galaxy
from processes import JobProcessWatcher, process_summary
from report import report, summarise
from workloads import KiB, make_data, send_key, SEND_PREFIX, sha256_file, SourceObject, Workload, workloads

from galaxy_cloud_storage_testing import localgalaxy
from galaxy_cloud_storage_testing.local_clouds import PROVIDERS, start_cloud

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# The plugin's modules, imported by import_plugin() once the snapshot (if any) is on sys.path; the
# references import the plugin's settings (part sizes), so they come after it too.
plugin_engine = references = None


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
    return {
        "commit": git("rev-parse", "HEAD"),
        "lib_changes": git("status", "--porcelain", "--", "lib").splitlines(),
        "snapshot": str(target),
    }


def import_plugin() -> str:
    global plugin_engine, references
    import references

    import galaxy_cloud_storage
    from galaxy_cloud_storage.transfer import engine as plugin_engine

    return os.path.dirname(galaxy_cloud_storage.__file__)


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


# -- rclone ----------------------------------------------------------------------------------------


def run_rclone(args: list[str], remote) -> None:
    done = subprocess.run(["rclone", *args, *remote.extra_args, "-q"], env=remote.env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"rclone {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")


# -- the bench -------------------------------------------------------------------------------------


class JobFailed(RuntimeError):
    """A plugin job that did not end ``ok``; ``result`` is what was measured of it."""

    def __init__(self, what: str, result: dict):
        self.result = result
        # Without the per-dataset lists, so that the job's stderr shows even for a get of 1,000 objects.
        brief = {k: v for k, v in result.items() if k not in ("dataset_ids", "dataset_names", "process")}
        super().__init__(f"{what} failed: {json.dumps(brief, indent=1)[:4000]}")


class Bench:
    def __init__(self, args, work: Path):
        self.args = args
        self.work = work
        self.provider = args.provider
        self.results: dict = {"provider": self.provider, "measurements": {}, "checks": []}
        self.services: list = []
        self.cloud = None
        self.galaxy_overrides: dict = {}  # galaxy.yml settings of a subclass's own (its database, say)

    # setup

    def start_services(self) -> None:
        say(f"starting the local {self.provider} cloud (galaxy_cloud_storage_testing/local_clouds.py)")
        self.cloud = start_cloud(self.provider, str(self.work / "cloud"))
        self.bucket = self.cloud.bucket
        self.reference = references.reference_for(self.cloud)
        self.results["reference"] = {
            "name": self.reference.sdk,
            **self.reference.describe(),
            "authorization": self.cloud.mode,
        }
        say(f"{self.provider}: bucket {self.bucket}, authorization {self.cloud.mode}, reference {self.reference.sdk}")

        say("starting Galaxy with the plugin (uvicorn galaxy_cloud_storage.mount:factory, local runner)")
        self.galaxy_started = time.monotonic()
        self.galaxy_process, self.galaxy_url, self.galaxy_yml = start_galaxy(
            self.work, self.provider, self.cloud.settings, **self.galaxy_overrides
        )
        self.services.append(self.galaxy_process)

    def prepare_data(self) -> None:
        say("writing the data (os.urandom) while Galaxy starts")
        self.loads = [
            load for load in workloads(self.args.scale, self.args.small_count) if load.name in self.args.workloads
        ]
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
        api_key = localgalaxy.user_api_key(
            self.galaxy_url, localgalaxy.admin_key(self.galaxy_yml), EMAIL, "bench-password-1"
        )
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

    def plugin_get(
        self, keys: list[str], label: str, watch: bool = False, total_bytes: int = 0, select: Optional[dict] = None
    ) -> dict:
        """A get of ``keys`` (or of what ``select`` names instead, e.g. ``{"prefix": ...}``, which
        must come to ``keys``), timed from the API call until the job and every dataset are ok."""
        history_id = self.gx.new_history(f"bench {label}")
        watcher = JobProcessWatcher(self.galaxy_process.pid, total_bytes) if watch else None
        if watcher:
            watcher.start()
        payload = {"history_id": history_id, "authz_id": self.authz_id, "bucket": self.bucket}
        payload.update(select or {"objects": keys})
        summaries, t0, api_s = self.timed_call("get", label, payload)
        job_id = summaries[0]["job_id"]
        states = self.gx.wait_job(job_id, history_id, t0)
        datasets = self.gx.wait_datasets(history_id, len(keys))
        total_s = time.monotonic() - t0
        result = {
            "total_s": round(total_s, 3), "api_s": round(api_s, 3), "job_states_s": states,
            "history_id": history_id, "job_id": job_id, "dataset_ids": [s["id"] for s in summaries],
            "dataset_names": [s["name"] for s in summaries], "job_ids": sorted({s["job_id"] for s in summaries}),
            "dataset_states": sorted({d["state"] for d in datasets}),
            "extensions": sorted({d["extension"] for d in datasets}),
        }  # fmt: skip
        if watcher:
            result["process"] = process_summary(watcher.stop(), t0, "get")
        result["job"] = self.gx.job_details(job_id)
        if result["job"]["state"] != "ok" or result["dataset_states"] != ["ok"]:
            raise JobFailed(f"plugin get {label}", result)
        return result

    def name_for_sending(self, history_id: str, dataset_ids: list[str], objects: list[SourceObject]) -> None:
        """A sent object is named after its dataset, which is named after the object it came from:
        renamed, the plugin's sends land under bench/send/plugin/ instead of beside the sources."""
        for dataset_id, obj in zip(dataset_ids, objects, strict=True):
            self.gx.ok(
                "PUT", f"histories/{history_id}/contents/{dataset_id}", json={"name": send_key("plugin", obj.key)}
            )

    def plugin_send(self, dataset_ids: list[str], label: str) -> dict:
        history_id = self.history_of[label]
        watcher = JobProcessWatcher(self.galaxy_process.pid)
        watcher.start()
        payload = {
            "history_id": history_id,
            "authz_id": self.authz_id,
            "bucket": self.bucket,
            "dataset_ids": dataset_ids,
        }
        body, t0, api_s = self.timed_call("send", label, payload)
        if body["failed_dataset_labels"]:
            raise RuntimeError(f"send {label} refused some datasets: {body['failed_dataset_labels']}")
        labels = [json.loads(item) for item in body["sent_dataset_labels"]]
        states = self.gx.wait_job(labels[0]["job_id"], history_id, t0)
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
        for obj, dataset_id in zip(load.objects, dataset_ids, strict=True):
            details = self.gx.ok("GET", f"datasets/{dataset_id}", params={"keys": "file_name,file_size"})
            pairs.append((obj, details["file_name"]))
        self.verify_files(what, pairs)

    def verify_objects(self, what: str, keys: list[str], objects: list[SourceObject], same_parts: bool) -> None:
        """Sizes, and the server's fingerprint where it has one, of what a copier sent. rclone's
        parts differ from the plugin's, and so may the fingerprint: ``same_parts`` False checks sizes only."""
        if self.args.no_verify:
            return
        bad, compared = [], 0
        for key, obj in zip(keys, objects, strict=True):
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
            say(
                f"API call, get of {len(keys)} objects #{i + 1}: {result['api_s']:.3f} s "
                f"(its job took {result['total_s']:.1f} s)"
            )
        self.record("api_get_100", {"runs_s": runs, "median_s": statistics.median(runs), "objects": len(keys)})
        self.record("api_diagnosis", self.diagnose_api(keys))

    def diagnose_api(self, keys: list[str]) -> dict:
        """What the get route does besides Galaxy's database work, timed from here: building the
        plugin's backend (with credentials minted as the route mints them: that exchange is part of
        the API call too) and the existence checks of the bucket and of every object."""
        from galaxy_cloud_storage.providers import cloud

        plugin = cloud(self.provider)
        mints, builds, heads = [], [], []
        for _ in range(3):
            started = time.monotonic()
            credentials, config = references.mint_credentials(self.cloud)
            mints.append(round(time.monotonic() - started, 3))
            started = time.monotonic()
            backend = plugin.storage(plugin.settings_model(**self.cloud.settings), credentials, config)
            builds.append(round(time.monotonic() - started, 3))
            started = time.monotonic()
            backend.check_bucket(self.bucket)
            backend.stat_many(self.bucket, keys)
            heads.append(round(time.monotonic() - started, 3))
        tiny_api = statistics.median(r["api_s"] for r in self.results["measurements"]["tiny_get"]["runs"])
        diagnosis = {
            "credentials_s": mints,
            "backend_build_s": builds,
            "existence_checks_s": heads,
            "existence_check": "stat_many",
            "api_1_object_s": tiny_api,
        }
        say(
            f"API diagnosis: credentials {mints} s, backend build {builds} s, "
            f"bucket + {len(keys)} objects checked {heads} s, API call for 1 object {tiny_api:.3f} s"
        )
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
            self.verify_files(
                f"get {load.name} {self.reference.sdk}",
                [(o, path) for o, (_, path) in zip(load.objects, pairs, strict=True)],
            )
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
        for _ in range(self.args.repeat):
            result = self.plugin_send(self.datasets_of[load.name], load.name)
            figures.setdefault("plugin", []).append(result)
            expected = [send_key("plugin", o.key) for o in load.objects]
            self.check(
                f"send {load.name} plugin: objects named after the renamed datasets",
                result["objects"] == expected,
                str(result["objects"][:3]),
            )
            self.verify_objects(f"send {load.name} plugin", result["objects"], load.objects, same_parts=True)
            self.reference.delete_prefix(SEND_PREFIX)
            say(f"send {load.name} ({load.label}) plugin: {result['total_s']:.2f} s")

            self.fresh_reference()
            pairs = [(o.path, send_key("sdk", o.key)) for o in load.objects]
            started = time.monotonic()
            self.reference.upload_all(pairs)
            took = time.monotonic() - started
            figures.setdefault("sdk", []).append({"total_s": round(took, 3)})
            self.verify_objects(
                f"send {load.name} {self.reference.sdk}", [key for _, key in pairs], load.objects, same_parts=True
            )
            self.reference.delete_prefix(SEND_PREFIX)
            say(f"send {load.name} ({load.label}) {self.reference.sdk}: {took:.2f} s")

            if self.remote.env:
                started = time.monotonic()
                run_rclone(
                    [
                        "copy",
                        str(self.work / "src" / load.name),
                        f"{self.remote.name}:{self.bucket}/{send_key('rclone', load.prefix)}",
                    ],
                    self.remote,
                )
                took = time.monotonic() - started
                figures.setdefault("rclone", []).append({"total_s": round(took, 3)})
                self.verify_objects(
                    f"send {load.name} rclone",
                    [send_key("rclone", o.key) for o in load.objects],
                    load.objects,
                    same_parts=False,
                )
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
            "version": (
                subprocess.run(["rclone", "version"], capture_output=True, text=True).stdout.splitlines()[0]
                if self.remote.env
                else None
            ),
            "remote": self.remote.note, "unavailable": self.remote.unavailable or None,
        }  # fmt: skip
        if self.remote.unavailable:
            say(f"rclone: not run ({self.remote.unavailable})")
        self.prepare_data()
        self.results["workloads"] = {
            load.name: {"label": load.label, "count": load.count, "size": load.size} for load in self.loads
        }
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


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", choices=PROVIDERS, default="aws", help="which cloud (default aws)")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiplies the sizes of workloads (a) and (b) (default 1: 1 GiB and 8 x 128 MiB)",
    )
    parser.add_argument("--workloads", default="abc", help="which of a, b, c to run (default abc)")
    parser.add_argument(
        "--small-count",
        type=int,
        default=200,
        help="objects in workload (c) (default 200; fewer for a smoke test only: the target is for 200)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each workload per copier; the median counts (default 1)"
    )
    parser.add_argument(
        "--tiny-repeat",
        type=int,
        default=3,
        help="runs of the 16 KiB get; the median is the fixed overhead (default 3)",
    )
    parser.add_argument("--api-repeat", type=int, default=3, help="runs of the 100-object API call (default 3)")
    parser.add_argument(
        "--poll", type=float, default=0.1, help="seconds between polls of the job's state (default 0.1)"
    )
    parser.add_argument(
        "--no-rclone", action="store_true", help="skip rclone (it is skipped anyway where it cannot reach the emulator)"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the byte checks (they are never timed)")
    parser.add_argument("--no-snapshot", action="store_true", help="use lib/ as it is, not a copy taken at the start")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, Galaxy's database)")
    parser.add_argument(
        "--workdir", help="where the cloud, Galaxy and the data live (default: a new temporary directory)"
    )
    parser.add_argument("--output", help="the JSON results file (default bench/results-<timestamp>.json)")
    parser.add_argument(
        "--report", metavar="RESULTS_JSON", help="print the report of an earlier run's JSON, and run nothing"
    )
    args = parser.parse_args(argv)
    if args.report:
        print("\n".join(report(json.loads(Path(args.report).read_text()))))
        return 0
    if not args.no_rclone and shutil.which("rclone") is None:
        parser.error("rclone is not on PATH (apt-get install rclone), or pass --no-rclone")

    return run_bench(Bench, args, "gcs-bench-", f"results-{args.provider}", report)


def run_bench(bench_type, args, workdir_prefix: str, results_name: str, report_of) -> int:
    """Run one bench (``bench_type(args, work)``) in a work directory of its own, then print its
    report (``report_of(results)``) and save its results as ``<results_name>-<timestamp>.json``."""
    # Background jobs of a non-interactive shell ignore SIGINT: take it back, and SIGTERM too, so
    # that either stops Galaxy, its jobs and the cloud's servers on the way out.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupted)

    work = Path(args.workdir or tempfile.mkdtemp(prefix=workdir_prefix)).resolve()
    work.mkdir(parents=True, exist_ok=True)
    plugin = snapshot_plugin(work) if not args.no_snapshot else {"snapshot": None}
    plugin["imported_from"] = import_plugin()
    # moto spools every object to a temporary file, Galaxy and the jobs write theirs: all in here.
    # (Set before the cloud starts: its servers inherit it.)
    (work / "tmp").mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(work / "tmp")
    tempfile.tempdir = None
    say(f"work directory {work}")
    bench = bench_type(args, work)
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
    lines = report_of(results)
    output = Path(args.output or HERE / f"{results_name}-{datetime.now():%Y%m%d-%H%M%S}.json")
    output.write_text(json.dumps(results, indent=1, default=str))
    print("\n" + "\n".join(lines), flush=True)
    print(f"\nresults: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

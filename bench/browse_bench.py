"""Browsing a bucket and getting a folder through the plugin, against the cloud's own SDK, in one
run, for one provider (aws, azure, gcp, openstack).

One local cloud and one Galaxy 26.1 with the plugin, started as cloud_bench.py starts them, serve
every measurement:

1. listing: a folder of 10,000 small objects, in pages of 50, with ``GET /api/cloud/storage/objects``
   (page 1 and page 100, without a delimiter and with "/") against the cloud's SDK listing the same
   pages with the credentials a job of the plugin gets; walking every page checks each key comes once;
2. folder get: ``POST /api/cloud/storage/get`` with ``{"prefix": ...}`` for 1,000 objects of 16 KiB
   in one request (the API call, and the job end to end) against a get of one object.

    .venv/bin/python bench/browse_bench.py --provider aws              # full size
    .venv/bin/python bench/browse_bench.py --provider gcp --scale 0.1  # quick: 1,000 listed, 100 got

bench/README.md says how to read the output. Nothing here is part of CI.
"""

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional

import cloud_bench
from cloud_bench import Bench, JobFailed, run_bench, say
from report import breakdown, verdict
from workloads import KiB, SourceObject

from galaxy_cloud_storage_testing.local_clouds import PROVIDERS
from galaxy_cloud_storage_testing.postgres import PostgresCluster

HERE = Path(__file__).resolve().parent
SYSTEM_TMP = tempfile.gettempdir()  # before main() points TMPDIR into the work directory
LIST_PREFIX = "browse/list/"
FOLDER_PREFIX = "browse/folder/"
ONE_PREFIX = "browse/one/"
SUBFOLDERS = 10  # the folder's objects sit in subfolders of it: a prefix get is recursive
OBJECT_SIZE = 16 * KiB
SEED_THREADS = 8  # puts in flight while seeding (untimed): the emulators take that many at once
CHECK_THREADS = 4  # dataset look-ups of the untimed byte checks
MODES = {"recursive": None, "delimiter": "/"}
TARGETS = {"api_page_s": 0.2, "api_over_sdk": 1.5, "deep_over_first": 1.25, "folder_api_s": 2.0, "folder_over_one": 2.0}
# The SDK's call that lists one page, per provider (what the reference does; references.py list_page).
LISTING_CALLS = {
    "aws": "boto3 list_objects_v2(MaxKeys, ContinuationToken)",
    "azure": "azure-storage-blob list_blobs / walk_blobs(results_per_page).by_page(continuation_token)",
    "gcp": "google-cloud-storage list_blobs(page_size, page_token)",
    "openstack": "swiftclient get_container(limit, marker)",
}


def median(runs: list[float]) -> float:
    return round(statistics.median(runs), 4)


def source_object(key: str, data: bytes) -> SourceObject:
    import hashlib

    return SourceObject(key, "", len(data), hashlib.sha256(data).hexdigest(), None)


class BrowseBench(Bench):
    postgres = None

    def start_services(self) -> None:
        if self.args.database == "postgres":
            # Not in the work directory: as root the cluster runs as the postgres user, who must reach it.
            self.postgres = PostgresCluster(tempfile.mkdtemp(prefix="browse-bench-postgres-", dir=SYSTEM_TMP)).start()
            self.galaxy_overrides["database_connection"] = self.postgres.create_database("galaxy")
            say(f"PostgreSQL for Galaxy at {self.postgres.directory}")
        super().start_services()

    def stop(self) -> None:
        super().stop()
        if self.postgres is not None:
            self.postgres.stop()
            shutil.rmtree(self.postgres.directory, ignore_errors=True)

    # data

    def prepare_data(self) -> None:
        """The listed folder (small bodies: the listing is measured, not bytes), the folder to get
        (16 KiB of random bytes each, in subfolders) and the one-object get's objects, put with the
        SDK reference from a pool of threads while Galaxy starts."""
        args = self.args
        self.listed = [f"{LIST_PREFIX}obj-{i:05d}" for i in range(args.objects)]
        bodies = {key: key.encode()[-16:] for key in self.listed}
        folder = {
            f"{FOLDER_PREFIX}d{i % SUBFOLDERS}/obj-{i:04d}": os.urandom(OBJECT_SIZE) for i in range(args.folder_objects)
        }
        ones = {f"{ONE_PREFIX}{name}": os.urandom(OBJECT_SIZE) for name in ("warmup", "one")}
        self.folder = [source_object(key, data) for key, data in sorted(folder.items())]
        self.warmup, self.one = (source_object(key, data) for key, data in ones.items())
        bodies.update(folder)
        bodies.update(ones)
        say(f"putting {len(bodies)} objects into the bucket with {self.reference.sdk}, {SEED_THREADS} at a time")
        started = time.monotonic()
        with ThreadPoolExecutor(SEED_THREADS) as pool:
            list(pool.map(lambda item: self.reference.put_bytes(*item), bodies.items()))
        self.results["setup_upload_s"] = round(time.monotonic() - started, 2)
        say(f"seeded in {self.results['setup_upload_s']} s")

    # listing: one page through the API, and through the SDK

    def api_page(self, delimiter: Optional[str], token: Optional[str]) -> tuple[tuple, float]:
        """GET cloud/storage/objects: (keys, folders, next token) and the wall time of the call."""
        params = {"authz_id": self.authz_id, "bucket": self.bucket, "prefix": LIST_PREFIX, "limit": self.args.page_size}
        if delimiter:
            params["delimiter"] = delimiter
        if token:
            params["page_token"] = token
        started = time.monotonic()
        response = self.gx.call("GET", "cloud/storage/objects", params=params)
        took = time.monotonic() - started
        if response.status_code != 200:
            raise RuntimeError(f"GET cloud/storage/objects {params}: {response.status_code} {response.text[:500]}")
        body = response.json()
        return ([o["key"] for o in body["objects"]], body["folders"], body["next_page_token"]), took

    def sdk_page(self, delimiter: Optional[str], token: Optional[str]) -> tuple[tuple, float]:
        started = time.monotonic()
        page = self.reference.list_page(LIST_PREFIX, delimiter, self.args.page_size, token)
        return page, time.monotonic() - started

    def walk(self, page_of: Callable) -> tuple[list[list[str]], list[Optional[str]], list[str]]:
        """Every page, untimed: each page's keys, the token that asks for each page (None for the
        first) and the folders seen."""
        pages, tokens, folders = [], [None], []
        limit = math.ceil(self.args.objects / self.args.page_size) + 2  # Swift may end on an empty page
        while len(pages) < limit:
            (keys, page_folders, following), _ = page_of(tokens[-1])
            pages.append(keys)
            folders.extend(page_folders)
            if not following:
                return pages, tokens, folders
            tokens.append(following)
        raise RuntimeError(f"the listing did not end after {limit} pages")

    def check_walk(self, what: str, pages: list[list[str]], folders: list[str]) -> None:
        seen = Counter(key for page in pages for key in page)
        missing = sorted(set(self.listed) - set(seen))
        doubled = sorted(key for key, n in seen.items() if n > 1)
        unexpected = sorted(set(seen) - set(self.listed))
        too_long = [n for n, page in enumerate(pages, 1) if len(page) > self.args.page_size]
        ok = not (missing or doubled or unexpected or too_long or folders)
        detail = (
            f"{len(pages)} pages; missing {len(missing)} {missing[:3]}, doubled {len(doubled)} {doubled[:3]}, "
            f"unexpected {len(unexpected)} {unexpected[:3]}, pages over {self.args.page_size}: {too_long[:5]}, "
            f"folders {folders[:3]}"
        )
        self.check(f"{what}: every key exactly once, in pages of at most {self.args.page_size}", ok, detail)
        say(f"{what}: {'OK' if ok else 'FAILED'} ({detail})")

    def listing(self, mode: str, delimiter: Optional[str]) -> None:
        say(f"listing ({mode}): walking every page through the API and through {self.reference.sdk} (untimed)")
        api_pages, api_tokens, api_folders = self.walk(lambda token: self.api_page(delimiter, token))
        self.check_walk(f"listing ({mode}), API", api_pages, api_folders)
        self.fresh_reference()
        sdk_pages, sdk_tokens, sdk_folders = self.walk(lambda token: self.sdk_page(delimiter, token))
        self.check_walk(f"listing ({mode}), {self.reference.sdk}", sdk_pages, sdk_folders)
        deep = min(self.args.page, len(api_pages), len(sdk_pages))
        for page in (1, deep):
            self.check(
                f"listing ({mode}): page {page} of the API = page {page} of {self.reference.sdk}",
                api_pages[page - 1] == sdk_pages[page - 1],
                f"{api_pages[page - 1][:2]} vs {sdk_pages[page - 1][:2]}",
            )
        # Timed: the two pages, API and SDK one after the other, so that both see the same load;
        # the first round warms both up and is not counted.
        runs: dict = {f"{who}_page_{page}": [] for who in ("api", "sdk") for page in (1, deep)}
        wrong = 0
        for round_ in range(self.args.repeat + 1):
            for page in (1, deep):
                (keys, _, _), api_s = self.api_page(delimiter, api_tokens[page - 1])
                (sdk_keys, _, _), sdk_s = self.sdk_page(delimiter, sdk_tokens[page - 1])
                wrong += (keys != api_pages[page - 1]) + (sdk_keys != sdk_pages[page - 1])
                if round_:
                    runs[f"api_page_{page}"].append(round(api_s, 4))
                    runs[f"sdk_page_{page}"].append(round(sdk_s, 4))
        self.check(f"listing ({mode}): every timed page as walked", not wrong, f"{wrong} differed")
        figures = {name: {"runs_s": r, "median_s": median(r)} for name, r in runs.items()}
        self.record(f"listing_{mode}", {
            "delimiter": delimiter, "pages": len(api_pages), "deep_page": deep, "page_size": self.args.page_size,
            **figures, "diagnosis": self.diagnose_listing(delimiter, sdk_tokens[deep - 1], sdk_pages[deep - 1]),
        })  # fmt: skip
        api, sdk = figures[f"api_page_{deep}"]["median_s"], figures[f"sdk_page_{deep}"]["median_s"]
        say(
            f"listing ({mode}): page 1 API {figures['api_page_1']['median_s']} s, "
            f"{self.reference.sdk} {figures['sdk_page_1']['median_s']} s; page {deep} API {api} s, "
            f"{self.reference.sdk} {sdk} s"
        )

    def diagnose_listing(self, delimiter: Optional[str], deep_token: Optional[str], deep_keys: list[str]) -> dict:
        """What the route does besides Galaxy's own work, timed from here as a request does it:
        minting the credentials, building the plugin's backend, its one listing call (list_page,
        given the cloud's own token of the deep page, which is what the API's opaque token holds)."""
        from galaxy_cloud_storage.providers import cloud

        plugin = cloud(self.provider)
        parts: dict = {name: [] for name in ("credentials_s", "backend_build_s", "list_page_1_s", "list_page_1_again_s",
                                             "list_page_deep_s", "sdk_page_1_s")}  # fmt: skip
        try:
            for _ in range(self.args.repeat):
                started = time.monotonic()
                credentials, config = cloud_bench.references.mint_credentials(self.cloud)
                parts["credentials_s"].append(round(time.monotonic() - started, 4))
                started = time.monotonic()
                backend = plugin.storage(plugin.settings_model(**self.cloud.settings), credentials, config)
                parts["backend_build_s"].append(round(time.monotonic() - started, 4))
                # A new backend's first call opens its connection; the next ones reuse it.
                for name, token in (("list_page_1_s", None), ("list_page_1_again_s", None),
                                    ("list_page_deep_s", deep_token)):  # fmt: skip
                    started = time.monotonic()
                    page = backend.list_page(self.bucket, LIST_PREFIX, delimiter, self.args.page_size, token)
                    parts[name].append(round(time.monotonic() - started, 4))
                # The SDK's page 1 beside them, under the same load.
                parts["sdk_page_1_s"].append(round(self.sdk_page(delimiter, None)[1], 4))
            self.check(
                "the plugin's list_page, given the SDK's token, lists the SDK's deep page",
                [o.key for o in page.objects] == deep_keys,
                str([o.key for o in page.objects][:2]),
            )
        except Exception as e:  # a diagnosis only: the figures above stand without it
            return {"unavailable": repr(e)[:500]}
        # A plugin route that reads the authorization and touches no cloud: Galaxy's own cost of a request.
        floor = []
        for _ in range(self.args.repeat):
            started = time.monotonic()
            self.gx.ok("GET", f"cloud/authz/{self.authz_id}")
            floor.append(round(time.monotonic() - started, 4))
        return {**{name: {"runs_s": r, "median_s": median(r)} for name, r in parts.items()},
                "authz_show_s": {"runs_s": floor, "median_s": median(floor)}}  # fmt: skip

    def buckets(self) -> None:
        """GET cloud/storage/buckets, for information (a user scoped to one bucket may be refused)."""
        runs, status = [], None
        for _ in range(self.args.repeat):
            started = time.monotonic()
            response = self.gx.call("GET", "cloud/storage/buckets", params={"authz_id": self.authz_id})
            runs.append(round(time.monotonic() - started, 4))
            status = response.status_code
        self.record("buckets", {"runs_s": runs, "median_s": median(runs), "status": status,
                                "answer": response.text[:300]})  # fmt: skip

    # gets

    def verify_datasets(self, what: str, objects: list[SourceObject], result: dict) -> None:
        """Each object as exactly one dataset named by its key, with its bytes (sha256; untimed)."""
        names = Counter(result["dataset_names"])
        expected = {obj.key for obj in objects}
        self.check(
            f"{what}: one dataset per object, named by its key, one job",
            names == Counter(expected) and len(result["job_ids"]) == 1,
            f"{len(names)} names, {len(set(names) - expected)} unexpected, {len(expected - set(names))} missing, "
            f"jobs {result['job_ids']}",
        )
        if self.args.no_verify:
            return
        by_name = dict(zip(result["dataset_names"], result["dataset_ids"], strict=True))
        present = [obj for obj in objects if obj.key in by_name]

        def path_of(obj: SourceObject) -> str:
            return self.gx.ok("GET", f"datasets/{by_name[obj.key]}", params={"keys": "file_name"})["file_name"]

        with ThreadPoolExecutor(CHECK_THREADS) as pool:
            self.verify_files(what, list(zip(present, pool.map(path_of, present), strict=True)))

    def gets(self) -> None:
        say("warm-up: one plugin get (not counted)")
        self.record("warmup_get", self.plugin_get([self.warmup.key], "warm-up"))
        ones = []
        for i in range(self.args.one_repeat):
            ones.append(self.plugin_get([self.one.key], f"one {i}", watch=True, total_bytes=self.one.size))
            say(f"one-object get #{i + 1}: API {ones[-1]['api_s']:.3f} s, end to end {ones[-1]['total_s']:.2f} s")
        self.verify_datasets("one-object get", [self.one], ones[0])
        self.record("one_get", {"runs": ones, "median_s": median([r["total_s"] for r in ones])})

    def folder_gets(self) -> None:
        keys = [obj.key for obj in self.folder]
        total = sum(obj.size for obj in self.folder)
        folders, failed = [], []
        for i in range(self.args.folder_repeat):
            try:
                result = self.plugin_get(
                    keys, f"folder {i}", watch=True, total_bytes=total, select={"prefix": FOLDER_PREFIX}
                )
            except JobFailed as e:  # recorded, and the run goes on: the listing's figures stand
                failed.append({k: v for k, v in e.result.items() if k not in ("dataset_ids", "dataset_names")})
                self.check(f"folder get #{i + 1}: the job and every dataset ok", False, str(e)[:1500])
                continue
            folders.append(result)
            say(
                f"folder get #{i + 1} ({len(keys)} objects by prefix): API {result['api_s']:.3f} s, "
                f"end to end {result['total_s']:.2f} s"
            )
            self.verify_datasets(f"folder get #{i + 1}", self.folder, result)
        self.record("folder_get", {
            "objects": len(keys), "bytes": total, "runs": folders, "failed_runs": failed,
            "median_s": median([r["total_s"] for r in folders]) if folders else None,
            "api_median_s": median([r["api_s"] for r in folders + failed]),
            "listing_s": self.time_folder_listing(), "sdk_download_s": self.sdk_download_folder(),
            "galaxy_log": self.galaxy_job_log((folders + failed)[0]["job_id"]) if folders + failed else [],
        })  # fmt: skip

    def sdk_download_folder(self) -> float:
        """The folder's bytes moved by the SDK reference (DEFAULT_WORKERS objects at a time, a subfolder
        after another: SwiftService downloads one folder per call), for the transfer process's time."""
        self.fresh_reference()
        dest = self.work / "dl"
        groups: dict = {}
        for obj in self.folder:
            sub = os.path.dirname(obj.key)[len(FOLDER_PREFIX) :]
            groups.setdefault(sub, []).append((obj, str(dest / sub / os.path.basename(obj.key))))
        for sub in groups:
            (dest / sub).mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        for pairs in groups.values():
            self.reference.download_all([(obj.key, path) for obj, path in pairs])
        took = time.monotonic() - started
        self.verify_files(f"folder downloaded by {self.reference.sdk}", [pair for g in groups.values() for pair in g])
        shutil.rmtree(dest)
        say(f"the folder's {len(self.folder)} objects downloaded by {self.reference.sdk}: {took:.2f} s")
        return round(took, 3)

    def galaxy_job_log(self, job_id: str) -> list[str]:
        """Galaxy's own log lines about the job (queueing, preparing, finishing, with the times it
        logs), but not one per dataset; and the SQLite lock errors around it."""
        number = self.gx.ok("GET", f"configuration/decode/{job_id}")["decoded_id"]
        marks = (f"({number}) ", f"Job [{number}]", f"job {number} ", f"Job(s): {number}", f"Job[id={number},")
        lines = []
        with open(self.work / "galaxy.log", errors="replace") as fh:
            for line in fh:
                if f"/jobs/{job_id}/credentials" in line:  # the transfer process redeeming its ticket
                    lines.append(line.strip()[:300])
                    continue
                if "setting dataset" in line or ' - "' in line:  # per dataset; access log
                    continue
                if any(mark in line for mark in marks) or "database is locked" in line:
                    lines.append(line.strip()[:300])
        return lines

    def time_folder_listing(self) -> list[float]:
        """The cloud side of the folder get's API call, timed from here: the plugin's backend (new,
        as per request) listing the whole folder in pages of the most the cloud gives."""
        from galaxy_cloud_storage.providers import cloud
        from galaxy_cloud_storage.providers.storage import MAX_PAGE_SIZE

        plugin = cloud(self.provider)
        runs = []
        for _ in range(3):
            started = time.monotonic()
            credentials, config = cloud_bench.references.mint_credentials(self.cloud)
            backend = plugin.storage(plugin.settings_model(**self.cloud.settings), credentials, config)
            continuation, first = None, True
            while first or continuation:
                page = backend.list_page(self.bucket, FOLDER_PREFIX, None, MAX_PAGE_SIZE, continuation)
                continuation, first = page.continuation, False
            runs.append(round(time.monotonic() - started, 4))
        return runs

    def dry_run(self) -> None:
        """The plan of the folder get (dry_run), for information: its API time and its size."""
        history_id = self.gx.new_history("bench dry run")
        payload = {"history_id": history_id, "authz_id": self.authz_id, "bucket": self.bucket,
                   "prefix": FOLDER_PREFIX, "dry_run": True}  # fmt: skip
        runs = []
        for _ in range(self.args.repeat):
            plan, _, api_s = self.timed_call("get", "dry run", payload)
            runs.append(round(api_s, 4))
        planned = plan.get("objects", []) if isinstance(plan, dict) else []
        self.check(
            "dry run: the plan lists every object of the folder",
            sorted(p.get("key") for p in planned) == [obj.key for obj in self.folder],
            f"{len(planned)} planned",
        )
        self.record("dry_run", {"runs_s": runs, "median_s": median(runs), "planned_objects": len(planned),
                                "total_bytes": plan.get("total_bytes") if isinstance(plan, dict) else None,
                                "answer_head": json.dumps(plan)[:500]})  # fmt: skip

    def run(self) -> dict:
        started = time.monotonic()
        self.results.update(
            started=datetime.now().isoformat(timespec="seconds"), objects=self.args.objects,
            folder_objects=self.args.folder_objects, object_size=OBJECT_SIZE, page_size=self.args.page_size,
            repeat=self.args.repeat, database=self.args.database, cpus=os.cpu_count(),
            load_average_at_start=os.getloadavg(),
            python=sys.version.split()[0],
        )  # fmt: skip
        self.start_services()
        self.results["reference"]["listing"] = LISTING_CALLS[self.provider]
        self.prepare_data()
        self.connect_galaxy()
        for mode, delimiter in MODES.items():
            if mode in self.args.modes:
                self.listing(mode, delimiter)
        self.buckets()
        self.gets()
        self.dry_run()  # before the folder get: what the call costs without making datasets
        self.folder_gets()
        self.results["load_average_at_end"] = os.getloadavg()
        self.results["bench_s"] = round(time.monotonic() - started, 1)
        return self.results


# -- the report ------------------------------------------------------------------------------------


def listing_lines(entry: dict, mode: str, sdk: str, ratios: dict) -> list[str]:
    deep, label = entry["deep_page"], "no delimiter" if mode == "recursive" else f'delimiter "{entry["delimiter"]}"'
    lines = [f"listing, {label}: {entry['pages']} pages of {entry['page_size']}"]
    for page in (1, deep):
        api, ref = entry[f"api_page_{page}"], entry[f"sdk_page_{page}"]
        ratio = api["median_s"] / ref["median_s"]
        ratios[f"{mode}_page_{page}_api_s"], ratios[f"{mode}_page_{page}_api_over_sdk"] = api["median_s"], ratio
        lines.append(
            f"    page {page:>3}: API {api['median_s']:.3f} s (runs {api['runs_s']})  {sdk} {ref['median_s']:.3f} s"
        )
        lines.append(
            f"        API < {TARGETS['api_page_s']} s  {verdict(api['median_s'] < TARGETS['api_page_s'])};  "
            f"API/{sdk} = {ratio:.2f}  target <= {TARGETS['api_over_sdk']}  {verdict(ratio <= TARGETS['api_over_sdk'])}"
        )
    deep_ratio = entry[f"api_page_{deep}"]["median_s"] / entry["api_page_1"]["median_s"]
    ratios[f"{mode}_deep_over_first"] = deep_ratio
    lines.append(
        f"    API page {deep} / page 1 = {deep_ratio:.2f}  target <= {TARGETS['deep_over_first']}  "
        f"{verdict(deep_ratio <= TARGETS['deep_over_first'])}"
    )
    d = entry.get("diagnosis", {})
    if "unavailable" in d:
        lines.append(f"    (no diagnosis: {d['unavailable']})")
    elif d:
        med = lambda name: f"{d[name]['median_s']:.3f} s" if name in d else "-"  # noqa: E731
        lines.append(
            f"    of which, timed from the bench (medians): credentials {med('credentials_s')}, backend build "
            f"{med('backend_build_s')}, the plugin's list_page: page 1 on that new backend {med('list_page_1_s')}, "
            f"then again {med('list_page_1_again_s')}, page {deep} {med('list_page_deep_s')} ({sdk}'s page 1 beside "
            f"them {med('sdk_page_1_s')}); Galaxy alone (GET cloud/authz/ID) {med('authz_show_s')}"
        )
    return lines


def report(results: dict) -> list[str]:
    m = results["measurements"]
    plugin = results.get("plugin", {})
    ref = results.get("reference", {})
    sdk = ref.get("name", "sdk")
    lines = [
        f"{results['provider']} browse bench: {results['objects']} objects listed, a folder of "
        f"{results['folder_objects']} x {results['object_size'] // KiB} KiB got; Galaxy on "
        f"{results.get('database', 'sqlite')}; {results['cpus']} CPUs, "
        f"load average at start {results['load_average_at_start'][0]:.2f}, "
        f"at end {results.get('load_average_at_end', [0])[0]:.2f}",
        f"plugin: commit {plugin.get('commit', '?')[:10]}"
        f"{' + uncommitted changes in lib/' if plugin.get('lib_changes') else ''}, from {plugin.get('imported_from')}",
        f"reference: {ref.get('listing')}, a client built beforehand; authorization {ref.get('authorization')}",
    ]
    ratios: dict = {}
    for mode in MODES:
        if f"listing_{mode}" in m:
            lines.extend(listing_lines(m[f"listing_{mode}"], mode, sdk, ratios))
    if "buckets" in m:
        b = m["buckets"]
        lines.append(
            f"buckets: GET cloud/storage/buckets {b['median_s']:.3f} s, status {b['status']}  (for information)"
        )
    if "one_get" in m:
        one = m["one_get"]
        lines.append(
            f"one-object get (16 KiB): {one['median_s']:.2f} s end to end "
            f"(runs {[r['total_s'] for r in one['runs']]}; API {[r['api_s'] for r in one['runs']]} s)"
        )
        runs = sorted(one["runs"], key=lambda r: r["total_s"])
        lines.extend("    " + line for line in breakdown(runs[len(runs) // 2]))
    if "dry_run" in m:
        lines.append(
            f"dry run of the folder get: API {m['dry_run']['median_s']:.3f} s (runs {m['dry_run']['runs_s']}), "
            f"a plan of {m['dry_run']['planned_objects']} objects  (for information: the call without its datasets)"
        )
    if "folder_get" in m:
        f = m["folder_get"]
        api, runs, failed_runs = f["api_median_s"], f["runs"], f.get("failed_runs", [])
        ratios["folder_api_s"] = api
        lines.append(
            f"folder get, {f['objects']} x {results['object_size'] // KiB} KiB by prefix in one request: "
            f"API call {api:.3f} s (runs {[r['api_s'] for r in runs + failed_runs]})  "
            f"target < {TARGETS['folder_api_s']} s  {verdict(api < TARGETS['folder_api_s'])}"
        )
        if f.get("listing_s"):
            lines.append(f"    of which, timed from the bench: a new backend listing the folder {f['listing_s']} s")
        if runs and "one_get" in m:
            ratio = f["median_s"] / m["one_get"]["median_s"]
            ratios["folder_over_one"] = ratio
            lines.append(
                f"    end to end {f['median_s']:.2f} s (runs {[r['total_s'] for r in runs]}) / one-object get = "
                f"{ratio:.2f}  target <= {TARGETS['folder_over_one']}  {verdict(ratio <= TARGETS['folder_over_one'])}"
            )
        for run in sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2 :][:1]:
            lines.extend("    " + line for line in breakdown(run))
            p = run.get("process") or {}
            if f.get("sdk_download_s") and p.get("bytes_written_s") is not None:
                in_job = p["bytes_written_s"] - p["started_s"]
                lines.append(
                    f"    the objects' bytes: transfer process start to all bytes written {in_job:.2f} s; {sdk} "
                    f"downloading the same {f['objects']} objects {f['sdk_download_s']:.2f} s (ratio "
                    f"{in_job / f['sdk_download_s']:.2f}, for information)"
                )
        redeemed = [line.rsplit('" ', 1)[-1] for line in f.get("galaxy_log", []) if "/credentials " in line]
        if redeemed:
            lines.append(f"    the job's ticket redemption, as Galaxy answered it: {redeemed}")
        logged = [line for line in f.get("galaxy_log", []) if " ms)" in line]
        if logged:
            lines.append("    Galaxy's log of the job: " + "; ".join(line.split("] ", 1)[-1] for line in logged))
        locked = sum("database is locked" in line for line in f.get("galaxy_log", []))
        if locked:
            lines.append(f"    'database is locked' in Galaxy's log during the run: {locked} lines")
        for run in failed_runs:
            job = run.get("job", {})
            lines.append(
                f"    FAILED run: job {job.get('state')} after {run['total_s']} s, datasets {run['dataset_states']}, "
                f"job states first seen {run['job_states_s']}; end to end target  n/a"
            )
            lines.append(f"        job's stderr: {job.get('stderr_tail', '').strip()[-300:]}")
            if run.get("process"):
                lines.extend("    " + line for line in breakdown(run))
    failed = [c for c in results["checks"] if not c["ok"]]
    lines.append(
        f"checks: {len(results['checks']) - len(failed)} of {len(results['checks'])} passed"
        + (f"; FAILED: {[c['what'] for c in failed]}" if failed else "")
    )
    results["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    results["targets"] = TARGETS
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", choices=PROVIDERS, default="aws", help="which cloud (default aws)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies both folders' object counts (default 1: 10,000 and 1,000)"
    )
    parser.add_argument("--objects", type=int, help="objects in the listed folder (default 10,000 x scale)")
    parser.add_argument("--folder-objects", type=int, help="objects of the folder get (default 1,000 x scale)")
    parser.add_argument("--page-size", type=int, default=50, help="objects per listed page (default 50)")
    parser.add_argument("--page", type=int, default=100, help="the deep page timed besides page 1 (default 100)")
    parser.add_argument("--modes", default="recursive,delimiter", help="listings to time (default both)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each listing call; the median (5)")
    parser.add_argument("--folder-repeat", type=int, default=1, help="runs of the folder get (default 1)")
    parser.add_argument("--one-repeat", type=int, default=3, help="runs of the one-object get (default 3)")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="Galaxy's database (default sqlite, as cloud_bench.py; postgres: a local cluster of its own)",
    )
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between polls of the job's state (0.1)")
    parser.add_argument("--no-verify", action="store_true", help="skip the byte checks of the datasets (untimed)")
    parser.add_argument("--no-snapshot", action="store_true", help="use lib/ as it is, not a copy taken at the start")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, Galaxy's database)")
    parser.add_argument("--workdir", help="where the cloud, Galaxy and the data live (default: a new temporary one)")
    parser.add_argument("--output", help="the JSON results file (default bench/results-browse-<provider>-<time>.json)")
    parser.add_argument("--report", metavar="RESULTS_JSON", help="print an earlier run's report, and run nothing")
    args = parser.parse_args(argv)
    if args.report:
        print("\n".join(report(json.loads(Path(args.report).read_text()))))
        return 0
    args.objects = args.objects if args.objects is not None else max(1, round(10000 * args.scale))
    args.folder_objects = args.folder_objects if args.folder_objects is not None else max(1, round(1000 * args.scale))
    args.modes = args.modes.split(",")

    return run_bench(BrowseBench, args, "gcs-browse-bench-", f"results-browse-{args.provider}", report)


if __name__ == "__main__":
    sys.exit(main())

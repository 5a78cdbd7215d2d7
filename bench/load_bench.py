"""Load on one Galaxy as admins run it: many users' get and send requests at the same time.

Issue 10 §1 "Load": 50 concurrent ``get`` requests of 20 objects each, then 50 concurrent sends of
the resulting datasets, from 5 users, against one Galaxy under gravity (gunicorn with two workers,
two job handlers, Celery; galaxy_cloud_storage_testing/gravity_galaxy.py), on PostgreSQL and, to
say what an admin on SQLite should expect, on SQLite. Counted: every request's HTTP status and
latency (until its response), every job's end state, every dataset's bytes (against the object it
came from) and how often each appears in its history, every sent object's bytes. A bench, not a
test: it prints the figures and writes them to bench/results-load-<timestamp>.json.

    .venv/bin/python bench/load_bench.py                          # 50 x 20 objects, 5 users, both databases
    .venv/bin/python bench/load_bench.py --database sqlite --requests 10 --objects-per-request 5

SQLite: Galaxy's handlers cannot claim jobs from SQLite with ``SELECT ... FOR UPDATE SKIP LOCKED``
(``db-skip-locked``, the plugin's sample); there the web workers preassign each new job to one of
the two handlers listed in job_conf (``db-preassign``, the method Galaxy documents for databases
without it). Everything else is the same Galaxy.
"""

import argparse
import json
import math
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Optional

import requests

from galaxy_cloud_storage_testing import gravity_galaxy, local_clouds, localgalaxy
from galaxy_cloud_storage_testing.gravity_galaxy import GravityGalaxy

HERE = Path(__file__).resolve().parent
PASSWORD = "password123"
SOURCE_PREFIX = "load/src/"
SENT_PREFIX = "load/sent/"
TERMINAL_JOB_STATES = {"ok", "error", "failed", "deleted", "deleting", "skipped"}
FINISHED_DATASET_STATES = {"ok", "error", "failed_metadata", "discarded", "deferred"}
# Lines of Galaxy's logs that mean the database got in the way (PostgreSQL or SQLite wording).
DATABASE_TROUBLE = ("deadlock detected", "database is locked", "OperationalError", "could not serialize")
HTTP_TIMEOUT = 600
CHECK_THREADS = 8  # for the untimed checks and renames: enough to be quick, few enough not to be load
KiB = 1024


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


@dataclass
class SourceObject:
    key: str
    data: bytes


@dataclass
class User:
    email: str
    key: str
    authz_id: str = ""
    history_id: str = ""


@dataclass
class Call:
    """One API request as the bench saw it."""

    request: int
    user: int
    status: str = ""  # the HTTP status, or the exception's name when there was no response
    latency_s: float = 0.0
    body: object = None
    error: str = ""


@dataclass
class Round:
    calls: list[Call] = field(default_factory=list)
    wall_s: float = 0.0  # from the first call to the last job's end
    job_states: dict[str, str] = field(default_factory=dict)


def make_objects(count: int, seed: int) -> list[SourceObject]:
    """``count`` objects of 1-16 KiB, each of different bytes."""
    sizes = random.Random(seed)
    return [
        SourceObject(f"{SOURCE_PREFIX}obj-{n:05d}.bin", os.urandom(sizes.randint(1 * KiB, 16 * KiB)))
        for n in range(count)
    ]


def api(url: str, key: str, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{url}/api/{path}", headers={"x-api-key": key}, timeout=HTTP_TIMEOUT, **kwargs)


def ok(response: requests.Response):
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text[:500]}")
    return response.json()


def fire_together(url: str, users: list[User], action: str, payloads: list[tuple[int, dict]]) -> list[Call]:
    """POST cloud/storage/<action> for every (user, payload) at once: one thread each, released
    together by a barrier; each call timed until its response."""
    barrier = threading.Barrier(len(payloads))

    def one(numbered: tuple[int, tuple[int, dict]]) -> Call:
        request, (user, payload) = numbered
        call = Call(request, user)
        barrier.wait()
        started = time.monotonic()
        try:
            response = api(url, users[user].key, "POST", f"cloud/storage/{action}", json=payload)
            call.latency_s = time.monotonic() - started
            call.status = str(response.status_code)
            if response.status_code == 200:
                call.body = response.json()
            else:
                call.error = response.text[:500]
        except requests.RequestException as e:
            call.latency_s = time.monotonic() - started
            call.status, call.error = type(e).__name__, str(e)[:500]
        return call

    with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
        return list(pool.map(one, enumerate(payloads)))


def wait_for_jobs(url: str, users: list[User], job_ids: dict[str, int], timeout: float) -> tuple[dict[str, str], bool]:
    """Poll each user's history's job list until every job in ``job_ids`` (id -> user) has ended.
    Returns the last state seen of each, and whether all ended in time."""
    states: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        for index, user in enumerate(users):
            if not any(owner == index for owner in job_ids.values()):
                continue
            response = api(url, user.key, "GET", "jobs", params={"history_id": user.history_id, "limit": 10000})
            if response.status_code == 200:
                states.update({job["id"]: job["state"] for job in response.json() if job["id"] in job_ids})
        if all(states.get(job_id) in TERMINAL_JOB_STATES for job_id in job_ids):
            return states, True
        if time.monotonic() > deadline:
            return states, False
        time.sleep(1)


def latency_summary(calls: list[Call]) -> dict:
    latencies = sorted(call.latency_s for call in calls if call.status == "200")
    if not latencies:
        return {"median_s": None, "p99_s": None, "max_s": None}
    p99 = latencies[max(0, math.ceil(0.99 * len(latencies)) - 1)]  # nearest rank
    return {
        "median_s": round(statistics.median(latencies), 3),
        "p99_s": round(p99, 3),
        "max_s": round(latencies[-1], 3),
    }


def round_summary(name: str, result: Round, timed_out: bool) -> dict:
    statuses = Counter(call.status for call in result.calls)
    return {
        "requests": len(result.calls),
        "errors": {status: count for status, count in statuses.items() if status != "200"},
        **latency_summary(result.calls),
        "wall_to_all_jobs_s": round(result.wall_s, 1),
        "jobs": len(result.job_states),
        "jobs_not_ok": {state: count for state, count in Counter(result.job_states.values()).items() if state != "ok"},
        "jobs_unfinished_at_timeout": timed_out,
        "error_bodies": [
            {"request": call.request, "status": call.status, "error": call.error}
            for call in result.calls
            if call.status != "200"
        ][:20],
        "latencies_s": [round(call.latency_s, 3) for call in result.calls],
    }


def brief(summary: dict) -> str:
    """A round's figures in one line, printed as soon as the round ends."""
    keys = ("requests", "errors", "median_s", "p99_s", "max_s", "wall_to_all_jobs_s", "jobs", "jobs_not_ok")
    return ", ".join(f"{key} {summary[key]}" for key in keys)


class LoadRun:
    """One database: its Galaxy, the users, the get round, the checks, the send round, the checks."""

    def __init__(self, database: str, args, cloud, objects: list[SourceObject], work: Path, run_id: str):
        self.database, self.args, self.cloud, self.objects, self.run_id = database, args, cloud, objects, run_id
        self.galaxy = GravityGalaxy(
            str(work / f"galaxy-{database}"),
            {"providers": {cloud.provider: cloud.settings}},
            database="sqlite" if database == "sqlite" else "postgresql",
        )
        self.users: list[User] = []
        self.results: dict = {"database": database}
        self.source_by_key = {obj.key: obj for obj in objects}

    def plan(self) -> list[tuple[int, list[SourceObject]]]:
        """Request r: user r mod n, objects r*k ... r*k+k-1 (every object in exactly one request)."""
        k = self.args.objects_per_request
        return [(r % self.args.users, self.objects[r * k : (r + 1) * k]) for r in range(self.args.requests)]

    def run(self) -> dict:
        started = time.monotonic()
        say(f"{self.database}: starting Galaxy under gravity in {self.galaxy.directory}")
        self.galaxy.start(timeout=1800)  # 2 shared cores: 9 min seen under load
        self.results["galaxy_start_s"] = round(time.monotonic() - started, 1)
        say(f"{self.database}: Galaxy serving at {self.galaxy.url} after {self.results['galaxy_start_s']} s")
        self.make_users()
        plan = self.plan()
        self.results["get"], get_round = self.get_round(plan)
        self.results["datasets"], datasets = self.check_datasets(plan, get_round)
        self.results["send"], sent = self.send_round(plan, datasets)
        self.results["objects_sent"] = self.check_sent(sent)
        self.results["log_lines_about_database_trouble"] = self.database_trouble()
        self.results["load_average_at_end"] = os.getloadavg()
        self.results["run_s"] = round(time.monotonic() - started, 1)
        return self.results

    def make_users(self) -> None:
        bootstrap = localgalaxy.admin_key(self.galaxy.galaxy_yml)
        for n in range(self.args.users):
            email = f"load-user-{n}@example.org"
            user = User(email, localgalaxy.user_api_key(self.galaxy.url, bootstrap, email, PASSWORD))
            authz = {"provider": self.cloud.provider, "config": self.cloud.authz_config}
            user.authz_id = ok(api(self.galaxy.url, user.key, "POST", "cloud/authz", json=authz))["id"]
            user.history_id = ok(api(self.galaxy.url, user.key, "POST", "histories", json={"name": "load"}))["id"]
            self.users.append(user)
        say(f"{self.database}: {len(self.users)} users, each with an authorization and a history")

    def get_round(self, plan) -> tuple[dict, Round]:
        payloads = [
            (
                user,
                {
                    "history_id": self.users[user].history_id,
                    "authz_id": self.users[user].authz_id,
                    "bucket": self.cloud.bucket,
                    "objects": [obj.key for obj in objects],
                },
            )
            for user, objects in plan
        ]
        say(f"{self.database}: {len(payloads)} get requests at once")
        result = Round()
        t0 = time.monotonic()
        result.calls = fire_together(self.galaxy.url, self.users, "get", payloads)
        jobs = {call.body[0]["job_id"]: call.user for call in result.calls if call.status == "200" and call.body}
        statuses = dict(Counter(call.status for call in result.calls))
        say(f"{self.database}: get calls answered {statuses}, latency {latency_summary(result.calls)}")
        say(f"{self.database}: waiting for {len(jobs)} get jobs")
        result.job_states, finished = wait_for_jobs(self.galaxy.url, self.users, jobs, self.args.job_timeout)
        result.wall_s = time.monotonic() - t0
        summary = round_summary("get", result, not finished)
        say(f"{self.database}: get round {brief(summary)}")
        states = dict(Counter(result.job_states.values()))
        say(f"{self.database}: get jobs ended after {summary['wall_to_all_jobs_s']} s: {states}")
        return summary, result

    def check_datasets(self, plan, get_round: Round) -> tuple[dict, dict[str, dict]]:
        """Every object of a request as exactly one dataset of its user's history, state ok, with the
        object's bytes; nothing else in the histories. Returns the summary and name -> dataset."""
        expected: dict[int, set[str]] = {n: set() for n in range(self.args.users)}
        for user, objects in plan:
            expected[user].update(obj.key for obj in objects)
        missing = doubled = extra = not_ok = 0
        found: dict[str, dict] = {}
        for n, user in enumerate(self.users):
            deadline = time.monotonic() + 300  # a job's end is seen before its last dataset is ok, at times
            while True:
                contents = ok(
                    api(
                        self.galaxy.url, user.key, "GET", f"histories/{user.history_id}/contents",
                        params={"v": "dev", "keys": "id,name,state,deleted", "limit": 100000},
                    )
                )  # fmt: skip
                if all(item["state"] in FINISHED_DATASET_STATES for item in contents) or time.monotonic() > deadline:
                    break
                time.sleep(1)
            names = Counter(item["name"] for item in contents)
            missing += len(expected[n] - set(names))
            doubled += sum(1 for name, count in names.items() if count > 1)
            extra += len(set(names) - expected[n])
            for item in contents:
                if item["state"] != "ok" or item["deleted"]:
                    not_ok += 1
                elif names[item["name"]] == 1 and item["name"] in expected[n]:
                    found[item["name"]] = {**item, "user": n}

        def wrong_bytes(item: dict) -> bool:
            display = api(
                self.galaxy.url, self.users[item["user"]].key, "GET", f"datasets/{item['id']}/display",
                params={"preview": False},
            )  # fmt: skip
            return display.status_code != 200 or display.content != self.source_by_key[item["name"]].data

        with ThreadPoolExecutor(CHECK_THREADS) as pool:
            wrong = sum(pool.map(wrong_bytes, found.values()))
        summary = {
            "expected": sum(len(names) for names in expected.values()),
            "ok_with_right_bytes": len(found) - wrong,
            "wrong_bytes": wrong,
            "missing": missing,
            "doubled": doubled,
            "unexpected": extra,
            "not_ok": not_ok,
        }
        say(f"{self.database}: datasets {summary}")
        return summary, found

    def sent_key(self, request: int, source_key: str) -> str:
        return f"{SENT_PREFIX}{self.run_id}/{self.database}/r{request:03d}/{source_key[len(SOURCE_PREFIX) :]}"

    def send_round(self, plan, datasets: dict[str, dict]) -> tuple[dict, dict[str, str]]:
        """Each get request's datasets sent back by one send request, renamed first (untimed) so
        that each lands under a prefix of its own: nothing collides with the sources or another
        request. Returns the summary and the objects the sends reported, object -> source key."""
        renames = [
            (datasets[obj.key], self.sent_key(r, obj.key))
            for r, (_, objects) in enumerate(plan)
            for obj in objects
            if obj.key in datasets
        ]

        def rename(pair) -> int:
            item, name = pair
            response = api(
                self.galaxy.url, self.users[item["user"]].key, "PUT",
                f"histories/{self.users[item['user']].history_id}/contents/{item['id']}", json={"name": name},
            )  # fmt: skip
            return response.status_code

        t0 = time.monotonic()
        with ThreadPoolExecutor(CHECK_THREADS) as pool:
            rename_statuses = Counter(pool.map(rename, renames))
        say(f"{self.database}: renamed {len(renames)} datasets in {time.monotonic() - t0:.1f} s: {rename_statuses}")
        payloads = []
        for user, objects in plan:
            payloads.append(
                (
                    user,
                    {
                        "history_id": self.users[user].history_id,
                        "authz_id": self.users[user].authz_id,
                        "bucket": self.cloud.bucket,
                        "dataset_ids": [datasets[obj.key]["id"] for obj in objects if obj.key in datasets],
                    },
                )
            )
        say(f"{self.database}: {len(payloads)} send requests at once")
        result = Round()
        t0 = time.monotonic()
        result.calls = fire_together(self.galaxy.url, self.users, "send", payloads)
        jobs, sent, refused = {}, {}, 0
        for call in result.calls:
            if call.status != "200":
                continue
            refused += len(call.body["failed_dataset_labels"])
            for label in map(json.loads, call.body["sent_dataset_labels"]):
                jobs[label["job_id"]] = call.user
                sent[label["object"]] = label["object"]
        statuses = dict(Counter(call.status for call in result.calls))
        say(f"{self.database}: send calls answered {statuses}, latency {latency_summary(result.calls)}")
        say(f"{self.database}: waiting for {len(jobs)} send jobs")
        result.job_states, finished = wait_for_jobs(self.galaxy.url, self.users, jobs, self.args.job_timeout)
        result.wall_s = time.monotonic() - t0
        summary = round_summary("send", result, not finished)
        say(f"{self.database}: send round {brief(summary)}")
        summary["renames"] = dict(rename_statuses)
        summary["datasets_refused"] = refused
        states = dict(Counter(result.job_states.values()))
        say(f"{self.database}: send jobs ended after {summary['wall_to_all_jobs_s']} s: {states}")
        expected = {self.sent_key(r, obj.key): obj.key for r, (_, objects) in enumerate(plan) for obj in objects}
        return summary, {name: expected.get(name, "") for name in sent}

    def check_sent(self, sent: dict[str, str]) -> dict:
        """Each object a send reported, in the bucket with its source's bytes; and what the bucket
        holds under this run's prefix: every expected name once, nothing else."""
        prefix = f"{SENT_PREFIX}{self.run_id}/{self.database}/"
        expected = {self.sent_key(r, obj.key) for r, (_, objects) in enumerate(self.plan()) for obj in objects}
        listed = Counter(self.cloud.admin.list_keys(self.cloud.bucket, prefix))

        def wrong_bytes(name: str) -> bool:
            source = sent[name]
            try:
                return (
                    not source
                    or self.cloud.admin.get_object(self.cloud.bucket, name) != self.source_by_key[source].data
                )
            except Exception:
                return True

        with ThreadPoolExecutor(CHECK_THREADS) as pool:
            wrong = sum(pool.map(wrong_bytes, [name for name in sent if name in listed]))
        summary = {
            "expected": len(expected),
            "reported_by_sends": len(sent),
            "in_bucket": sum(listed.values()),
            "right_bytes": sum(1 for name in sent if name in listed) - wrong,
            "wrong_bytes": wrong,
            "missing": len(expected - set(listed)),
            "unexpected": len(set(listed) - expected),
        }
        say(f"{self.database}: sent objects {summary}")
        return summary

    def database_trouble(self) -> dict:
        counts = {}
        for service in ("gunicorn", "celery", *self.galaxy.handler_names):
            try:
                lines = self.galaxy.log(service).splitlines()
            except OSError:
                continue
            counts[service] = {marker: sum(marker in line for line in lines) for marker in DATABASE_TROUBLE}
        return counts

    def stop(self) -> None:
        self.galaxy.stop()


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value}{unit}"


def report(results: dict) -> list[str]:
    runs = results["runs"]
    names = list(runs)
    width = 24
    lines = [
        f"load: {results['requests']} get requests of {results['objects_per_request']} objects "
        f"({results['objects']} objects, 1-16 KiB) and {results['requests']} sends, from {results['users']} users; "
        f"cloud {results['cloud']}; Galaxy under gravity: gunicorn x{gravity_galaxy.GUNICORN_WORKERS}, "
        f"{gravity_galaxy.HANDLER_PROCESSES} job handlers, Celery; "
        f"load average at start {results['load_average_at_start']}",
        "",
        f"{'':34}" + "".join(f"{name:>{width}}" for name in names),
    ]

    def row(label: str, pick) -> None:
        cells = []
        for name in names:
            try:
                cells.append(str(pick(runs[name])))
            except (KeyError, TypeError):
                cells.append("-")
        lines.append(f"{label:34}" + "".join(f"{cell:>{width}}" for cell in cells))

    def errors(summary: dict) -> str:
        return ", ".join(f"{status}: {count}" for status, count in sorted(summary["errors"].items())) or "0"

    def not_ok(summary: dict) -> str:
        text = ", ".join(f"{state}: {count}" for state, count in sorted(summary["jobs_not_ok"].items())) or "0"
        return text + (" (timed out)" if summary["jobs_unfinished_at_timeout"] else "")

    row("Galaxy start (s)", lambda r: r["galaxy_start_s"])
    for action in ("get", "send"):
        row(f"{action}: requests", lambda r, a=action: r[a]["requests"])
        row(f"{action}: errors (non-200)", lambda r, a=action: errors(r[a]))
        row(f"{action}: API latency median (s)", lambda r, a=action: fmt(r[a]["median_s"]))
        row(f"{action}: API latency p99 (s)", lambda r, a=action: fmt(r[a]["p99_s"]))
        row(f"{action}: wall time to all jobs (s)", lambda r, a=action: r[a]["wall_to_all_jobs_s"])
        row(f"{action}: jobs", lambda r, a=action: r[a]["jobs"])
        row(f"{action}: jobs not ok", lambda r, a=action: not_ok(r[a]))
    row("datasets expected", lambda r: r["datasets"]["expected"])
    row("datasets ok, right bytes", lambda r: r["datasets"]["ok_with_right_bytes"])
    row("datasets wrong/missing/doubled", lambda r: "{wrong_bytes}/{missing}/{doubled}".format(**r["datasets"]))
    row("datasets unexpected / not ok", lambda r: "{unexpected}/{not_ok}".format(**r["datasets"]))
    row("send: datasets refused", lambda r: r["send"]["datasets_refused"])
    row("sent objects expected", lambda r: r["objects_sent"]["expected"])
    row("sent objects right bytes", lambda r: r["objects_sent"]["right_bytes"])
    row(
        "sent objects wrong/missing/extra", lambda r: "{wrong_bytes}/{missing}/{unexpected}".format(**r["objects_sent"])
    )
    row(
        "log lines: database trouble",
        lambda r: sum(sum(counts.values()) for counts in r["log_lines_about_database_trouble"].values()),
    )
    for name in names:
        if "failed" in runs[name]:
            lines.append(f"{name}: FAILED: {runs[name]['failed']}")
    lines.append("")
    lines.append("p99 is the nearest-rank 99th percentile of the answered (200) calls: under 100 calls, the slowest.")
    return lines


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--requests", type=int, default=50, help="concurrent get requests, then as many sends (50)")
    parser.add_argument("--objects-per-request", type=int, default=20, help="objects per get request (20)")
    parser.add_argument("--users", type=int, default=5, help="users the requests are spread over (5)")
    parser.add_argument("--cloud", choices=("aws", "openstack"), default="aws", help="moto (aws) or Swift (aws)")
    parser.add_argument("--job-timeout", type=float, default=3600, help="seconds to wait for a round's jobs (3600)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (Galaxy's logs, databases)")
    parser.add_argument("--output", help="the JSON results file (default bench/results-load-<timestamp>.json)")
    parser.add_argument("--report", metavar="RESULTS_JSON", help="print an earlier run's report, and run nothing")
    args = parser.parse_args(argv)
    if args.report:
        print("\n".join(report(json.loads(Path(args.report).read_text()))))
        return 0
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupted)

    work = Path(tempfile.mkdtemp(prefix="load-bench-")).resolve()
    say(f"work directory {work}")
    databases = ["postgres", "sqlite"] if args.database == "both" else [args.database]
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}"
    results = {
        "run_id": run_id,
        "requests": args.requests,
        "objects_per_request": args.objects_per_request,
        "objects": args.requests * args.objects_per_request,
        "users": args.users,
        "cloud": args.cloud,
        "load_average_at_start": os.getloadavg(),
        "runs": {},
    }
    cloud = None
    interrupted_run = False
    try:
        cloud = local_clouds.start_cloud(args.cloud, str(work / "cloud"))
        objects = make_objects(results["objects"], seed=10)
        t0 = time.monotonic()
        with ThreadPoolExecutor(CHECK_THREADS) as pool:
            list(pool.map(lambda obj: cloud.admin.put_object(cloud.bucket, obj.key, obj.data), objects))
        say(f"{len(objects)} objects put into {args.cloud} bucket {cloud.bucket} in {time.monotonic() - t0:.1f} s")
        for database in databases:
            run = LoadRun(database, args, cloud, objects, work, run_id)
            try:
                results["runs"][database] = run.run()
            except Exception as e:  # report what there is, and go on with the other database
                say(f"{database}: failed: {e!r}")
                results["runs"][database] = {**run.results, "failed": repr(e)[:2000]}
                args.keep = True
            except KeyboardInterrupt as e:  # report what there is, then stop
                say(f"{database}: interrupted: {e}")
                results["runs"][database] = {**run.results, "failed": f"interrupted ({e})"}
                args.keep = interrupted_run = True
            finally:
                run.stop()
            if interrupted_run:
                break
    finally:
        if cloud is not None:
            cloud.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept {work}")
    output = Path(args.output or HERE / f"results-load-{run_id}.json")
    output.write_text(json.dumps(results, indent=1, default=str))
    print("\n" + "\n".join(report(results)), flush=True)
    print(f"\nresults: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What verifying every byte costs: the transfer step of a get (the backend's download, as a
transfer job runs it) of one large object, with its checksums and without, against the cloud's own
SDK, in one run, interleaved, on one local cloud (aws, azure, gcp, openstack).

"With" is the plugin as it is: the bytes hashed as they are written (SHA-256, and the cheapest
whole-object checksum the cloud keeps: CRC32 for an object the plugin sent to S3, Azure's
Content-MD5, GCS's CRC32C, a Swift SLO's segment MD5s), then compared. "Without" is the same
download with that hashing taken out (``Digests`` and ``verify`` replaced by no-ops in this process
only); nothing else changes. The object is sent by the plugin first, so that it has what a send
gives it (its SHA-256 in metadata, the checksum its cloud verified).

    .venv/bin/python bench/integrity_bench.py --provider aws              # 1 GiB, 3 rounds
    .venv/bin/python bench/integrity_bench.py --provider azure --size-mib 256 --repeat 1

Target: "with" at most 1.10 x "without". bench/README.md has the figures. Not part of CI.
"""

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from cloud_bench import run_bench, say
from references import mint_credentials, reference_for
from report import verdict
from workloads import make_file, sha256_file

from galaxy_cloud_storage.providers import cloud as cloud_plugin
from galaxy_cloud_storage.providers import integrity, storage
from galaxy_cloud_storage_testing.local_clouds import PROVIDERS, start_cloud

MiB = 1024 * 1024
TARGET = 1.10  # with / without
KEY = "bench/integrity/large.bin"


class NoDigests:
    """``Digests`` that hashes nothing: the download without its checksums."""

    def __init__(self, algorithms=(), segments=None, threaded=False):
        self.size = 0

    def update(self, data) -> None:
        self.size += len(data)

    def __contains__(self, algorithm) -> bool:
        return True

    def close(self) -> None:
        pass


def unverified(what, checksums, digests):
    return integrity.Verified("not computed")


class without_checksums:
    """Within the block, downloads hash and compare nothing (storage.py's only two uses)."""

    def __enter__(self):
        self.saved = storage.Digests, storage.verify
        storage.Digests, storage.verify = NoDigests, unverified

    def __exit__(self, *exc):
        storage.Digests, storage.verify = self.saved


def cpu_seconds() -> float:
    """This process's CPU time (the download's threads; the server runs in processes of its own)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class IntegrityBench:
    def __init__(self, args, work: Path):
        self.args, self.work = args, work
        self.results = {"provider": args.provider, "size_mib": args.size_mib, "repeat": args.repeat, "runs": []}
        self.cloud = None

    def run(self) -> dict:
        self.cloud = start_cloud(self.args.provider, str(self.work / "cloud"))
        credentials, config = mint_credentials(self.cloud)
        plugin = cloud_plugin(self.args.provider)
        backend = plugin.storage(plugin.settings_model(**self.cloud.settings), credentials, config)
        reference = reference_for(self.cloud)
        source = str(self.work / "source.bin")
        expected = make_file(source, self.args.size_mib * MiB)
        say(f"sending {self.args.size_mib} MiB with the plugin")
        sent = backend.upload(source, self.cloud.bucket, KEY)
        self.results["object"] = {"sent_verified": sent.verified.describe(), "sha256": expected}
        target = str(self.work / os.path.basename(KEY))  # (SwiftService keeps the key's name)

        def plugin_with():
            return backend.download(self.cloud.bucket, KEY, target).verified.describe()

        def plugin_without():
            with without_checksums():
                backend.download(self.cloud.bucket, KEY, target)
            return "not verified"

        def sdk():
            reference.download_all([(KEY, target)])
            return reference.sdk

        copiers = {"with checksums": plugin_with, "without checksums": plugin_without, reference.sdk: sdk}
        for round_ in range(self.args.repeat):
            for name, copy in copiers.items():  # interleaved: each round, each copier once
                os.path.exists(target) and os.unlink(target)
                started, cpu = time.perf_counter(), cpu_seconds()
                note = copy()
                seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
                assert sha256_file(target) == expected, f"{name}: the bytes differ"
                say(f"round {round_ + 1}: {name}: {seconds:.2f} s, {cpu:.2f} s of CPU ({note})")
                self.results["runs"].append(
                    {"copier": name, "round": round_ + 1, "seconds": seconds, "cpu_seconds": cpu, "note": note}
                )
        return self.results

    def stop(self) -> None:
        if self.cloud is not None:
            self.cloud.stop()


def report(results: dict) -> list[str]:
    medians, cpu = {}, {}
    for run in results["runs"]:
        medians.setdefault(run["copier"], []).append(run["seconds"])
        cpu.setdefault(run["copier"], []).append(run.get("cpu_seconds", float("nan")))
    medians = {name: statistics.median(times) for name, times in medians.items()}
    cpu = {name: statistics.median(times) for name, times in cpu.items()}
    with_, without = medians["with checksums"], medians["without checksums"]
    sdk = next(name for name in medians if name not in ("with checksums", "without checksums"))
    notes = {run["copier"]: run["note"] for run in results["runs"]}
    ratio = with_ / without
    mib = results["size_mib"]
    return [
        f"{results['provider']}: one {mib} MiB object, download (the transfer step), median of {results['repeat']}",
        f"  sent by the plugin: {results['object']['sent_verified']}",
        f"  with checksums:    {with_:6.2f} s  {mib / with_:7.1f} MiB/s  CPU {cpu['with checksums']:5.2f} s"
        f"  ({notes['with checksums']})",
        f"  without checksums: {without:6.2f} s  {mib / without:7.1f} MiB/s  CPU {cpu['without checksums']:5.2f} s",
        f"  {sdk:<18} {medians[sdk]:6.2f} s  {mib / medians[sdk]:7.1f} MiB/s  CPU {cpu[sdk]:5.2f} s",
        f"  with / without = {ratio:.3f} (target <= {TARGET}) {verdict(ratio <= TARGET)}",
        f"  with / {sdk} = {with_ / medians[sdk]:.3f} (information)",
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", choices=PROVIDERS, default="aws")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--workdir", help="where the cloud and the files live (default: a temporary directory)")
    parser.add_argument("--output", help="the JSON results file (default bench/results-integrity-<timestamp>.json)")
    args = parser.parse_args(argv)
    args.no_snapshot = True  # everything runs in this process, from lib/ as imported above
    return run_bench(IntegrityBench, args, "gcs-integrity-bench-", f"results-integrity-{args.provider}", report)


if __name__ == "__main__":
    sys.exit(main())

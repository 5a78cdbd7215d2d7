"""The bench's report: medians of the runs, the ratios against the cloud's SDK and the targets."""

import statistics

from workloads import human, MiB, Workload

TARGETS = {"ratio_large": 1.25, "ratio_small": 2.0, "peak_rss_mib": 300.0, "api_100_s": 0.5}


def summarise(figures: dict, load: Workload) -> dict:
    out = {"bytes": load.total}
    for tool, runs in figures.items():
        median = statistics.median(r["total_s"] for r in runs)
        out[tool] = {
            "median_s": median,
            "MiB_per_s": round(load.total / MiB / median, 1) if median else None,
            "runs": runs,
        }
    return out


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def breakdown(run: dict) -> list[str]:
    """Where the plugin's time went, from the watcher's view of the job's processes."""
    p = run.get("process")
    lines = []
    if p:
        moved = f", all bytes written at {p['bytes_written_s']} s" if p["bytes_written_s"] is not None else ""
        sniff = (
            f"sniffing step from {p['datatypes_started_s']} to {p['datatypes_exited_s']} s; "
            if p.get("datatypes_started_s") is not None
            else ""
        )
        lines.append(
            f"API call {run['api_s']} s; transfer process from {p['started_s']} s to {p['exited_s']} s{moved}; {sniff}"
            f"Galaxy's metadata step from {p['metadata_started_s']} to {p['metadata_exited_s']} s; "
            f"job ok at {run['job_states_s'].get('ok')} s"
        )
        rss = f"peak RSS {p['peak_rss_mib']} MiB"
        if p["peak_rss_until_bytes_written_mib"] is not None:
            rss += f" ({p['peak_rss_until_bytes_written_mib']} MiB until all bytes were written)"
        sniff = (
            f"sniffing step peak RSS {p['datatypes_peak_rss_mib']} MiB; "
            if p.get("datatypes_peak_rss_mib") is not None
            else ""
        )
        lines.append(
            f"transfer process: {rss}, up to {p['max_threads']} threads; "
            f"{sniff}metadata step peak RSS {p['metadata_peak_rss_mib']} MiB"
        )
    else:
        lines.append(f"API call {run['api_s']} s; job states first seen at {run['job_states_s']}")
    return lines


def report(results: dict) -> list[str]:
    m = results["measurements"]
    plugin = results.get("plugin", {})
    provider = results.get("provider", "aws")  # results of s3_bench.py before --provider were AWS's
    sdk = results.get("reference", {}).get("name", "boto3")
    lines = [
        f"{provider} bench, scale {results['scale']}, {results['cpus']} CPUs, "
        f"load average at start {results['load_average_at_start'][0]:.2f}, "
        f"at end {results.get('load_average_at_end', [0])[0]:.2f}",
        f"plugin: commit {plugin.get('commit', '?')[:10]}"
        f"{' + uncommitted changes in lib/' if plugin.get('lib_changes') else ''}, "
        f"from {plugin.get('imported_from')}",
    ]
    if "reference" in results:
        ref = results["reference"]
        lines.append(
            f"reference: {ref['sdk']}, parts of {human(ref['part_size'])}, "
            f"{ref['parts_in_parallel']} per object in parallel; authorization {ref['authorization']}"
        )
    rclone = results.get("rclone")
    if isinstance(rclone, dict) and rclone.get("unavailable"):
        lines.append(f"rclone: not run ({rclone['unavailable']})")
    elif isinstance(rclone, dict):
        lines.append(f"rclone: {rclone.get('version')}: {rclone.get('remote', '')}")
    elif rclone:  # results of s3_bench.py before --provider: the version only
        lines.append(f"rclone: {rclone}")
    tiny = m["tiny_get"]["median_s"]
    lines.append(
        f"plugin get of one 16 KiB object (fixed job overhead): {tiny:.2f} s "
        f"(runs: {', '.join(str(r['total_s']) for r in m['tiny_get']['runs'])})"
    )
    tiny_runs = sorted(m["tiny_get"]["runs"], key=lambda r: r["total_s"])
    lines.extend("    " + line for line in breakdown(tiny_runs[len(tiny_runs) // 2]))
    if "tiny_send" in m:
        lines.append(
            f"plugin send of one 16 KiB dataset: {m['tiny_send']['median_s']:.2f} s "
            f"(runs: {', '.join(str(r['total_s']) for r in m['tiny_send']['runs'])})"
        )
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
                    note = (
                        negative
                        if direction == "send"
                        else "  (negative: the fixed overhead varies more than this transfer takes; "
                        "run at a larger scale)"
                    )
                judged = "n/a" if ratio < 0 else verdict(ratio <= TARGETS["ratio_large"])
                lines.append(
                    f"    (plugin - tiny get) / {sdk} = {ratio:.2f}   "
                    f"target <= {TARGETS['ratio_large']}  {judged}{note}"
                )
                if direction == "send":
                    own_ratio = (p - own) / b
                    ratios[f"{direction}_{name}_own_overhead"] = own_ratio
                    judged = "n/a" if own_ratio < 0 else verdict(own_ratio <= TARGETS["ratio_large"])
                    lines.append(
                        f"    (plugin - tiny send) / {sdk} = {own_ratio:.2f}   "
                        f"target <= {TARGETS['ratio_large']}  {judged}  "
                        f"(a send job's own fixed overhead, {own:.2f} s)"
                    )
            else:
                ratio = p / tiny
                ratios[f"{direction}_{name}"] = ratio
                lines.append(
                    f"    plugin / tiny get = {ratio:.2f}   "
                    f"target <= {TARGETS['ratio_small']}  {verdict(ratio <= TARGETS['ratio_small'])}"
                )
                if direction == "send":
                    ratios[f"{direction}_{name}_own_overhead"] = p / own
                    lines.append(
                        f"    plugin / tiny send = {p / own:.2f}   "
                        f"target <= {TARGETS['ratio_small']}  {verdict(p / own <= TARGETS['ratio_small'])}  "
                        f"(a send job's own fixed overhead, {own:.2f} s)"
                    )
            process = entry["plugin"]["runs"][0].get("process") or {}
            end_mark = process.get("bytes_written_s") if direction == "get" else process.get("exited_s")
            if end_mark is not None and process.get("started_s") is not None:
                in_job = end_mark - process["started_s"]
                ratios[f"{direction}_{name}_in_job"] = in_job / b
                what = "start to all bytes written" if direction == "get" else "start to exit"
                lines.append(
                    f"    in the job: transfer process {what} {in_job:.2f} s / {sdk} = {in_job / b:.2f}   "
                    "(for information: the plugin's transfer code, its start-up included, without Galaxy)"
                )
            run = entry["plugin"]["runs"][0]
            lines.extend("    " + line for line in breakdown(run))
    get_a = m.get("get_a")
    if get_a and get_a["plugin"]["runs"][0].get("process"):
        peak = max(run["process"]["peak_rss_mib"] for run in get_a["plugin"]["runs"])
        ratios["peak_rss_a_mib"] = peak
        lines.append(
            f"peak RSS of the transfer process, get (a): {peak} MiB   "
            f"target <= {TARGETS['peak_rss_mib']:.0f} MiB  {verdict(peak <= TARGETS['peak_rss_mib'])}"
        )
    if "api_get_100" in m:
        api = m["api_get_100"]["median_s"]
        count = m["api_get_100"].get("objects", 100)
        ratios["api_get_100_s"] = api
        judged = verdict(api < TARGETS["api_100_s"]) if count == 100 else f"n/a ({count} objects only)"
        lines.append(
            f"API call, get of {count} objects: {api:.3f} s (runs: {m['api_get_100']['runs_s']})   "
            f"target < {TARGETS['api_100_s']} s  {judged}"
        )
        d = m.get("api_diagnosis")
        if d:
            minted = f"credentials minted {d['credentials_s']} s, " if "credentials_s" in d else ""
            lines.append(
                f"    of which, timed from the bench: {minted}"
                f"building the backend {d['backend_build_s']} s (first, then warm), "
                f"the bucket + existence of the {count} objects ({d['existence_check']}) "
                f"{d['existence_checks_s']} s; API call for 1 object {d['api_1_object_s']} s"
            )
    failed = [c for c in results["checks"] if not c["ok"]]
    lines.append(
        f"checks: {len(results['checks']) - len(failed)} of {len(results['checks'])} passed"
        + (f"; FAILED: {[c['what'] for c in failed]}" if failed else "")
    )
    results["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    results["targets"] = TARGETS
    return lines

"""The Galaxy the bench measures: started as a subprocess with the plugin (uvicorn, the local job
runner), and a small client of its API that times jobs."""

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from galaxy_cloud_storage_testing import localgalaxy

HOST = "127.0.0.1"
EMAIL = "bench@example.org"
TERMINAL_JOB_STATES = {"ok", "error", "failed", "deleted", "deleting", "skipped"}
VENV_BIN = Path(sys.executable).parent


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

    def wait_job(self, job_id: str, history_id: str, t0: float, timeout: float = 3600) -> dict:
        """Poll the job until it ends; the first time each state was seen, relative to ``t0``.

        Polled through the history's job list, not ``GET /api/jobs/{id}``: that one serializes every
        input and output of the job (a query each), so at ten polls a second on a 1,000-output job
        the bench itself kept one of the two cores busy (py-spy: half of Galaxy's CPU during the
        job) and slowed what it measured."""
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.ok("GET", "jobs", params={"history_id": history_id, "limit": 1000})
            state = next(job["state"] for job in jobs if job["id"] == job_id)
            seen.setdefault(state, round(time.monotonic() - t0, 3))
            if state in TERMINAL_JOB_STATES:
                return seen
            time.sleep(self.poll)
        raise RuntimeError(f"job {job_id} not finished after {timeout} s (states seen: {seen})")

    def wait_datasets(self, history_id: str, count: int, timeout: float = 600) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = self.ok(
                "GET",
                f"histories/{history_id}/contents",
                params={"v": "dev", "keys": "id,name,state,file_size,extension"},
            )
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
            "metrics": {
                k: metrics[k] for k in ("runtime_seconds", "start_epoch", "end_epoch", "galaxy_slots") if k in metrics
            },
        }


def start_galaxy(work: Path, provider: str, settings: dict, **overrides) -> tuple[subprocess.Popen, str, str]:
    """Galaxy with the plugin for ``provider``; ``overrides`` are more galaxy.yml settings."""
    gx_dir = work / "galaxy"
    gx_dir.mkdir()
    plugin_tool_conf = gx_dir / "cloud_storage_tool_conf.xml"
    from galaxy_cloud_storage.tools import tool_conf_xml  # the snapshot's, once it is on sys.path

    plugin_tool_conf.write_text(tool_conf_xml())
    plugin_config = {"providers": {provider: settings}}
    port = localgalaxy.free_port()
    galaxy_yml = localgalaxy.write_galaxy_config(
        str(gx_dir), plugin_config, admin_email=EMAIL,
        tool_config_file=f"{gx_dir / 'tool_conf.xml'},{plugin_tool_conf}",
        preserve_python_environment="legacy_and_local",  # the transfer tools run the plugin's Python
        galaxy_infrastructure_url=f"http://{HOST}:{port}",  # where the jobs redeem their tickets
        **overrides,
    )  # fmt: skip
    command = [
        str(VENV_BIN / "uvicorn"),
        "--factory",
        "galaxy_cloud_storage.mount:factory",
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    env = {
        "GALAXY_CONFIG_FILE": galaxy_yml,
        "VIRTUAL_ENV": str(VENV_BIN.parent),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    process = localgalaxy.start(command, str(work / "galaxy.log"), str(gx_dir), env)
    return process, f"http://{HOST}:{port}", galaxy_yml

"""Quick start: a real Galaxy 26.1 with the plugin, and moto as its S3 + STS, all on 127.0.0.1.

Run it through ``scripts/demo``, which prepares the virtualenv first. It stays in the foreground;
Ctrl-C (or SIGTERM) stops Galaxy, Galaxy's jobs and moto.

Environment:
  GALAXY_CLOUD_DEMO_PORT       Galaxy's port (default 8080)
  GALAXY_CLOUD_DEMO_DIR        all state: configs, secrets, database, datasets, logs (default <repo>/.demo)
  GALAXY_CLOUD_DEMO_MOTO_PORT  moto's port (default: a free one)

Once Galaxy answers, ``$GALAXY_CLOUD_DEMO_DIR/demo.json`` holds its URL and the demo user's API key.
"""

import argparse
import ctypes
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import (
    NoReturn,
    Optional,
)

import requests

import localgalaxy

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's console scripts (uvicorn, moto_server)
HOST = "127.0.0.1"
DEMO_EMAIL = "demo@example.org"
GALAXY_START_TIMEOUT = 600  # seconds; Galaxy takes 30-90 s on 2 cores
MOTO_START_TIMEOUT = 30
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

stop_signal: Optional[int] = None


class DemoError(Exception):
    """Ends the demo with a message and, when one explains it, the tail of a log."""

    def __init__(self, message: str, log: Optional[Path] = None):
        super().__init__(message)
        self.log = log


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: stop everything."""


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


# -- signals and processes --------------------------------------------------------------------------


def on_stop_signal(signum, frame) -> None:
    # Only a flag: raising here could leave a child started but untracked.
    global stop_signal
    stop_signal = signum


def pause(seconds: float) -> None:
    time.sleep(seconds)
    if stop_signal is not None:
        raise Interrupted


def die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if this script is killed without cleaning up."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def check_alive(name: str, process, log: Path) -> None:
    code = process.poll()
    if code is not None:
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        raise DemoError(f"{name} {how}; its log is {log}", log)


def wait_until_answering(name: str, process, log: Path, url: str, timeout: float) -> float:
    """Seconds until ``url`` answered 2xx."""
    started = time.monotonic()
    while True:
        check_alive(name, process, log)
        try:
            if requests.get(url, timeout=5).ok:
                return time.monotonic() - started
        except requests.RequestException:
            pass  # not listening yet
        if time.monotonic() - started > timeout:
            raise DemoError(f"{name} did not answer {url} within {timeout} s", log)
        pause(0.5)


def stop_all(services: list) -> None:
    global stop_signal
    if not services:
        return
    # A Galaxy still starting heeds SIGTERM only once its app is built, up to a minute later.
    say(f"Stopping {' and '.join(name for name, _, _ in reversed(services))} (Ctrl-C again kills at once)")
    stop_signal = None  # from here on a signal means "kill now"
    for name, process, _ in reversed(services):  # Galaxy before moto
        localgalaxy.stop(process, kill_now=lambda: stop_signal is not None)
    say("Stopped")


# -- settings and files -----------------------------------------------------------------------------


def port_from_env(name: str, default: Optional[int]) -> Optional[int]:
    value = os.environ.get(name)
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise DemoError(f"{name}={value!r} is not a port number")
    return int(value)


def ensure_free(port: int, variable: str) -> None:
    """Fail now rather than after Galaxy's long start, or worse, talk to another server."""
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError as e:
            raise DemoError(f"{HOST}:{port} is not free ({e.strerror}); set {variable} to another port") from e


def settings() -> tuple:
    """The demo directory and the two ports, from the environment."""
    demo_dir = Path(os.environ.get("GALAXY_CLOUD_DEMO_DIR") or ROOT / ".demo").resolve()
    galaxy_port = port_from_env("GALAXY_CLOUD_DEMO_PORT", 8080)
    ensure_free(galaxy_port, "GALAXY_CLOUD_DEMO_PORT")
    moto_port = port_from_env("GALAXY_CLOUD_DEMO_MOTO_PORT", None)
    if moto_port is None:
        return demo_dir, galaxy_port, localgalaxy.free_port()
    ensure_free(moto_port, "GALAXY_CLOUD_DEMO_MOTO_PORT")
    return demo_dir, galaxy_port, moto_port


def write_demo_json(demo_dir: Path, galaxy_url: str, api_key: str) -> Path:
    """What scripts and later tools read to reach the demo; the one place that writes it. Atomic,
    since scripts wait for it to appear; owner-only, since it holds a key."""
    path = demo_dir / "demo.json"
    tmp = path.with_name("demo.json.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        json.dump({"galaxy_url": galaxy_url, "api_key": api_key}, fh, indent=2)
    os.replace(tmp, path)
    return path


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError as e:
        return f"(cannot read {path}: {e.strerror})\n"


# -- the demo --------------------------------------------------------------------------------------


def run(demo_dir: Path, galaxy_port: int, moto_port: int, services: list) -> NoReturn:
    (demo_dir / "logs").mkdir(parents=True, exist_ok=True)
    (demo_dir / "demo.json").unlink(missing_ok=True)  # a stale one would look like a started demo
    galaxy_url, moto_url = f"http://{HOST}:{galaxy_port}", f"http://{HOST}:{moto_port}"
    plugin_config = {"providers": {"aws": {"s3_endpoint_url": moto_url, "sts_endpoint_url": moto_url}}}
    # Rewritten on every start, so that changed ports take effect; the secrets in it are kept.
    galaxy_yml = localgalaxy.write_galaxy_config(str(demo_dir), plugin_config, admin_email=DEMO_EMAIL)
    first_start = not (demo_dir / "database" / "universe.sqlite").exists()

    moto_log, galaxy_log = demo_dir / "logs" / "moto.log", demo_dir / "logs" / "galaxy.log"
    say(f"Starting moto (log: {moto_log})")
    moto_argv = [str(BIN / "moto_server"), "-H", HOST, "-p", str(moto_port)]
    services.append(("moto", localgalaxy.start(moto_argv, str(moto_log), str(demo_dir), preexec_fn=die_with_parent), moto_log))
    say(f"Starting Galaxy (log: {galaxy_log})")
    galaxy_argv = [str(BIN / "uvicorn"), "--factory", "galaxy_cloud_storage.mount:factory", "--host", HOST, "--port", str(galaxy_port)]
    galaxy = localgalaxy.start_galaxy(galaxy_argv, galaxy_yml, str(galaxy_log), preexec_fn=die_with_parent)
    services.append(("Galaxy", galaxy, galaxy_log))

    wait_until_answering("moto", services[0][1], moto_log, moto_url, MOTO_START_TIMEOUT)
    say(f"moto (S3 + STS) answers at {moto_url}")
    say("Waiting for Galaxy" + (" (first start: creating the database)" if first_start else ""))
    elapsed = wait_until_answering("Galaxy", galaxy, galaxy_log, f"{galaxy_url}/api/version", GALAXY_START_TIMEOUT)
    say(f"Galaxy answered /api/version {elapsed:.1f} s after it was started")

    password = localgalaxy.persisted_secret(str(demo_dir / "demo_password"))
    api_key = localgalaxy.user_api_key(galaxy_url, localgalaxy.admin_key(galaxy_yml), DEMO_EMAIL, password)
    demo_json = write_demo_json(demo_dir, galaxy_url, api_key)
    print(f"\n  Galaxy:   {galaxy_url}\n  API key:  {api_key}\n  S3 + STS: {moto_url} (moto)\n", flush=True)
    say(f"Wrote {demo_json}. Ctrl-C stops Galaxy and moto.")
    while True:
        for name, process, log in services:
            check_alive(name, process, log)
        pause(1)


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_stop_signal)
    services: list = []
    try:
        demo_dir, galaxy_port, moto_port = settings()
        run(demo_dir, galaxy_port, moto_port, services)
    except Interrupted:
        say(f"{signal.Signals(stop_signal).name} received")
        return 0
    except (DemoError, requests.RequestException) as e:
        say(str(e))
        if getattr(e, "log", None):
            print(f"--- last lines of {e.log} ---\n{log_tail(e.log)}", end="", file=sys.stderr, flush=True)
        return 1
    finally:
        stop_all(services)
        if services:
            (demo_dir / "demo.json").unlink(missing_ok=True)  # it describes a running demo


if __name__ == "__main__":
    sys.exit(main())

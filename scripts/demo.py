"""Quick start: a real Galaxy 26.1 with the plugin, an OpenID provider that Galaxy logs its users
in with, and the four clouds' storage on 127.0.0.1: moto (S3 + STS + IAM, IAM enforcement on),
Azurite (Azure Blob, checking bearer tokens) with a Microsoft identity platform token endpoint,
fake-gcs-server behind a token-checking proxy with Google's token endpoints, and a Swift cluster.

Run it through ``scripts/demo``, which prepares the virtualenvs and the Node.js servers first. It
stays in the foreground; Ctrl-C (or SIGTERM) stops Galaxy, Galaxy's jobs and every server.

What it sets up: Galaxy's OIDC login with the provider (Galaxy's generic ``oidc`` backend); the demo
user, logged in through Galaxy's real login flow (the provider's login form, Galaxy's callback), so
Galaxy holds that login's tokens as it would for a browser; in each cloud, a bucket (container)
that user may use, and what turns the user's login into that cloud's short-lived credentials: an IAM
role to assume with the id_token (AWS), an app with a federated credential for the login (Azure), a
workload identity pool provider (GCP). The demo's Swift runs without Keystone (the tests run one:
keystone_aio.py): its authorization is a user and key of Swift's own v1 auth, kept in Galaxy's vault.

Options: ``--providers aws,azure,gcp,openstack`` picks the clouds (default: all four; also
GALAXY_CLOUD_DEMO_PROVIDERS).

Environment:
  GALAXY_CLOUD_DEMO_PORT       Galaxy's port (default 8080)
  GALAXY_CLOUD_DEMO_DIR        all state: configs, secrets, database, datasets, logs (default <repo>/.demo)
  GALAXY_CLOUD_DEMO_OIDC_PORT  the OpenID provider's port (default: a free one)
  GALAXY_CLOUD_DEMO_PROVIDERS  the clouds to start, as --providers

Once all answer, ``$GALAXY_CLOUD_DEMO_DIR/demo.json`` says how to reach them::

    {"galaxy_url": ..., "api_key": <the demo user's>, "authn_id": <the demo user's OIDC identity>,
     "providers": {"aws": {"authz_config": {"role_arn": ...}, "bucket": ...,
                           "admin": {"endpoint_url", "access_key", "secret_key"}},
                   "azure": {"authz_config": {"tenant_id", "client_id", "storage_account"}, "bucket": ...,
                             "admin": {"connection_string"}},
                   "gcp": {"authz_config": {"project", "audience"}, "bucket": ...,
                           "admin": {"endpoint_url", "project"}},
                   "openstack": {"authz_config": {"swift_user", "swift_key"}, "bucket": ...,
                                 "admin": {"auth_url", "user", "key"}}}}

``admin`` is each storage server's own access: to look into the bucket, not for Galaxy.
"""

import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import NoReturn, Optional

import requests

from galaxy_cloud_storage_testing import local_clouds, localgalaxy, oidc_provider

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's console scripts (uvicorn)
HOST = "127.0.0.1"
DEMO_LOGIN = "demo"  # the provider's login name; the email is <login>@example.org
DEMO_EMAIL = "demo@example.org"
GALAXY_START_TIMEOUT = 600  # seconds; Galaxy takes 30-90 s on 2 cores
OIDC_START_TIMEOUT = 30
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


def stop_all(services: list, clouds: list) -> None:
    global stop_signal
    if not services and not clouds:
        return
    # A Galaxy still starting heeds SIGTERM only once its app is built, up to a minute later.
    names = [name for name, _, _ in reversed(services)] + [f"{cloud.provider}'s servers" for cloud in clouds]
    say(f"Stopping {', '.join(names)} (Ctrl-C again kills at once)")
    stop_signal = None  # from here on a signal means "kill now"
    for _, process, _ in reversed(services):  # Galaxy first
        localgalaxy.stop(process, kill_now=lambda: stop_signal is not None)
    for cloud in clouds:
        cloud.stop()
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
    """The demo directory and the ports of Galaxy and the OpenID provider, from the environment."""
    demo_dir = Path(os.environ.get("GALAXY_CLOUD_DEMO_DIR") or ROOT / ".demo").resolve()
    ports = []
    for variable, default in (("GALAXY_CLOUD_DEMO_PORT", 8080), ("GALAXY_CLOUD_DEMO_OIDC_PORT", None)):
        port = port_from_env(variable, default)
        if port is None:
            port = localgalaxy.free_port()
        else:
            ensure_free(port, variable)
        ports.append(port)
    if len(set(ports)) != len(ports):
        raise DemoError(f"Galaxy and the OpenID provider need two different ports, not {ports}")
    return (demo_dir, *ports)


def write_demo_json(demo_dir: Path, described: dict) -> Path:
    """What scripts and later tools read to reach the demo; the one place that writes it. Atomic,
    since scripts wait for it to appear; owner-only, since it holds keys."""
    path = demo_dir / "demo.json"
    tmp = path.with_name("demo.json.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        json.dump(described, fh, indent=2)
    os.replace(tmp, path)
    return path


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError as e:
        return f"(cannot read {path}: {e.strerror})\n"


# -- the demo --------------------------------------------------------------------------------------


# The example folder each demo bucket holds, for the README's walkthrough: a few BED files, and a
# paired-end FASTQ run that a folder get makes one list:paired collection of.
EXAMPLE_READ = "@{name}\nACGTACGTAC\n+\nIIIIIIIIII\n"
EXAMPLES = {
    "examples/peaks/rep1.bed": "chr1\t100\t200\tpeak1\t0\t+\nchr1\t300\t400\tpeak2\t0\t-\n",
    "examples/peaks/rep2.bed": "chr2\t150\t250\tpeak3\t0\t+\n",
    "examples/peaks/README.txt": "Peaks of two replicates.\n",
    **{
        f"examples/run-1/sample{n}_R{r}.fastq": EXAMPLE_READ.format(name=f"sample{n}.read1/{r}")
        for n in (1, 2)
        for r in (1, 2)
    },
}


def put_examples(cloud) -> None:
    for key, text in EXAMPLES.items():
        cloud.admin.put_object(cloud.bucket, key, text.encode())


def run(demo_dir: Path, galaxy_port: int, oidc_port: int, providers: tuple, services: list, clouds: list) -> NoReturn:
    (demo_dir / "logs").mkdir(parents=True, exist_ok=True)
    (demo_dir / "demo.json").unlink(missing_ok=True)  # a stale one would look like a started demo
    galaxy_url = f"http://{HOST}:{galaxy_port}"
    issuer = oidc_provider.issuer_url(oidc_port)
    logs = demo_dir / "logs"
    oidc_log, galaxy_log = logs / "oidc_provider.log", logs / "galaxy.log"

    say(f"Starting the OpenID provider (log: {oidc_log})")
    oidc = oidc_provider.start(oidc_port, str(oidc_log), galaxy_url, preexec_fn=die_with_parent)
    services.append(("the OpenID provider", oidc, oidc_log))
    # The clouds forget everything when they stop: their servers, buckets, roles and apps are made
    # on every start, trusting the demo user's logins at this provider.
    identity = local_clouds.OidcIdentity(issuer, oidc_provider.CLIENT_ID, DEMO_LOGIN)
    for provider in providers:
        workdir = demo_dir / "clouds" / provider
        shutil.rmtree(workdir, ignore_errors=True)
        say(f"Starting {provider}'s storage (logs: {workdir})")
        clouds.append(local_clouds.start_cloud(provider, str(workdir), identity))
        put_examples(clouds[-1])
        pause(0)
    plugin_config = {"providers": {name: {"enabled": False} for name in local_clouds.PROVIDERS}}
    plugin_config["providers"].update({cloud.provider: cloud.settings for cloud in clouds})
    # Rewritten on every start, so that changed ports take effect; the secrets in it are kept.
    oidc_settings = oidc_provider.galaxy_oidc_config(str(demo_dir), galaxy_url, issuer)
    galaxy_yml = localgalaxy.write_galaxy_config(str(demo_dir), plugin_config, admin_email=DEMO_EMAIL, **oidc_settings)
    first_start = not (demo_dir / "database" / "universe.sqlite").exists()
    say(f"Starting Galaxy (log: {galaxy_log})")
    galaxy_argv = [
        str(BIN / "uvicorn"),
        "--factory",
        "galaxy_cloud_storage.mount:factory",
        "--host",
        HOST,
        "--port",
        str(galaxy_port),
    ]
    galaxy = localgalaxy.start_galaxy(galaxy_argv, galaxy_yml, str(galaxy_log), preexec_fn=die_with_parent)
    services.append(("Galaxy", galaxy, galaxy_log))

    wait_until_answering(
        "the OpenID provider", oidc, oidc_log, f"{issuer}/.well-known/openid-configuration", OIDC_START_TIMEOUT
    )
    say(f"The OpenID provider answers at {issuer}")
    say("Waiting for Galaxy" + (" (first start: creating the database)" if first_start else ""))
    elapsed = wait_until_answering("Galaxy", galaxy, galaxy_log, f"{galaxy_url}/api/version", GALAXY_START_TIMEOUT)
    say(f"Galaxy answered /api/version {elapsed:.1f} s after it was started")

    # Galaxy's real OIDC login, as a browser does it: on a later start the same user and identity
    # are found again, and their API key is reused.
    try:
        session = oidc_provider.login(galaxy_url, DEMO_LOGIN)
    except oidc_provider.LoginFailed as e:
        hint = ""
        if (demo_dir / "demo_password").exists():  # an earlier demo made the user with a password
            hint = (
                f" ({demo_dir} was made by an earlier version of the demo, "
                f"whose {DEMO_EMAIL} has no OIDC identity: remove it)"
            )
        raise DemoError(
            f"Logging {DEMO_LOGIN} in to Galaxy through the OpenID provider failed{hint}: {e}", galaxy_log
        ) from e
    api_key = oidc_provider.api_key(session, galaxy_url)
    authn_id = oidc_provider.identity_id(session, galaxy_url)
    say(f"{DEMO_EMAIL} logged in to Galaxy through the OpenID provider (identity {authn_id})")
    described = {
        cloud.provider: {"authz_config": cloud.authz_config, "bucket": cloud.bucket, "admin": cloud.admin.demo_admin()}
        for cloud in clouds
    }
    demo_json = write_demo_json(
        demo_dir, {"galaxy_url": galaxy_url, "api_key": api_key, "authn_id": authn_id, "providers": described}
    )
    lines = [
        f"  Galaxy:         {galaxy_url}",
        f"  API key:        {api_key} ({DEMO_EMAIL})",
        f"  OpenID login:   {issuer} (any login name)",
    ]
    lines += [f"  {cloud.provider + ':':<15} bucket {cloud.bucket}, {cloud.mode} authorization" for cloud in clouds]
    print("\n" + "\n".join(lines) + "\n", flush=True)
    say(f"Wrote {demo_json}. Ctrl-C stops Galaxy, the OpenID provider and the clouds.")
    while True:
        for name, process, log in services:
            check_alive(name, process, log)
        pause(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--providers", default=os.environ.get("GALAXY_CLOUD_DEMO_PROVIDERS", ""),
        help="comma-separated clouds to start: aws, azure, gcp, openstack (default: all)",
    )  # fmt: skip
    args = parser.parse_args()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_stop_signal)
    services: list = []
    clouds: list = []
    try:
        try:
            providers = local_clouds.optional(args.providers)
        except ValueError as e:
            raise DemoError(str(e)) from e
        demo_dir, galaxy_port, oidc_port = settings()
        run(demo_dir, galaxy_port, oidc_port, providers, services, clouds)
    except Interrupted:
        say(f"{signal.Signals(stop_signal).name} received")
        return 0
    except (DemoError, RuntimeError, requests.RequestException) as e:
        say(str(e))
        if getattr(e, "log", None):
            print(f"--- last lines of {e.log} ---\n{log_tail(e.log)}", end="", file=sys.stderr, flush=True)
        return 1
    finally:
        stop_all(services, clouds)
        if services or clouds:
            (demo_dir / "demo.json").unlink(missing_ok=True)  # it describes a running demo


if __name__ == "__main__":
    sys.exit(main())

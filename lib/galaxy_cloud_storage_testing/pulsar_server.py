"""A Pulsar server on 127.0.0.1, for the tests: the remote node that Galaxy's Pulsar runner sends
the transfer jobs to (config_samples/job_conf.pulsar.yml.sample).

PyPI ``pulsar-app`` runs in a virtualenv of its own (default ``.venv-pulsar`` beside ``.venv``),
together with the plugin installed WITHOUT Galaxy (no ``[galaxy]`` extra): a Pulsar node has no
Galaxy, no access to Galaxy's files or database, only the plugin's transfer code
(``python -m galaxy_cloud_storage.transfer.job``) and the clouds' SDKs. The plugin is installed
editable, so the node runs the working tree's transfer code. ``python -m
galaxy_cloud_storage_testing.pulsar_server install [--venv PATH]`` creates it once (idempotent,
with a stamp).

A server is ``pulsar-serve`` (gunicorn, one worker) with one ``queued_python`` manager: jobs run
as subprocesses of the server, in its staging directory, with the venv activated by Pulsar's job
script (``galaxy_virtual_env``) so that a tool's ``python`` is the venv's.

On one machine a node would see Galaxy's files, and a job that reads them (a path Pulsar did not
rewrite, a file it did not stage) would pass here and fail on a real node. So the server runs in
a mount namespace of its own (``unshare``, as root) where Galaxy's side is hidden under empty
tmpfs mounts: ``/tmp`` (where the tests' Galaxies keep their files) and Galaxy's venv. Its own
directory must therefore be elsewhere (e.g. ``/var/tmp``).
"""

import argparse
import os
import secrets
import shlex
import subprocess
import sys
import time
from typing import Optional

import requests
import yaml

from galaxy_cloud_storage_testing import localgalaxy, REPOSITORY

DEFAULT_VENV = os.path.join(REPOSITORY, ".venv-pulsar")
#: pulsar-app with its web server (gunicorn); the plugin itself is added from REPOSITORY
REQUIREMENTS = ("pulsar-app[web]==0.16.0",)
STAMP_NAME = ".pulsar-installed"
STAMP = " ".join(REQUIREMENTS) + f" -e {REPOSITORY}"  # what the stamp records
#: what a node does not see of Galaxy's side: the tests' Galaxies live in /tmp, and Galaxy is
#: installed in the venv that runs the tests (and Galaxy)
GALAXY_SIDE = ("/tmp", sys.prefix)


# --- the virtualenv -----------------------------------------------------------------------------


def pulsar_python(venv: str = DEFAULT_VENV) -> str:
    return os.path.join(venv, "bin", "python")


def is_installed(venv: str = DEFAULT_VENV) -> bool:
    try:
        with open(os.path.join(venv, STAMP_NAME)) as fh:
            return fh.read().strip() == STAMP
    except OSError:
        return False


def install(venv: str = DEFAULT_VENV, python: str = sys.executable) -> float:
    """Create ``venv`` with pulsar-app and the plugin (no Galaxy) unless its stamp says they are
    there; returns the seconds spent (0 when nothing was to do). About a minute, 400 MB."""
    if is_installed(venv):
        return 0.0
    started = time.monotonic()
    if not os.path.exists(pulsar_python(venv)):
        subprocess.run([python, "-m", "venv", venv], check=True)
    pip = [pulsar_python(venv), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _quiet_pip(pip + list(REQUIREMENTS) + ["-e", REPOSITORY])
    # The node must run the transfer code, and must not have Galaxy's datatypes (nor Galaxy).
    check = (
        "import importlib.util, pulsar.web.wsgi, galaxy_cloud_storage.transfer.job\n"
        "assert importlib.util.find_spec('galaxy.datatypes') is None, 'Galaxy found in the Pulsar venv'"
    )
    subprocess.run([pulsar_python(venv), "-c", check], check=True)
    with open(os.path.join(venv, STAMP_NAME), "w") as fh:
        fh.write(STAMP + "\n")
    return time.monotonic() - started


def _quiet_pip(command: list) -> None:
    """Run pip, passing its messages on except "WARNING: Location ... is ignored", which comes from
    the machine's pip configuration, not from this install (as swift_aio does)."""
    result = subprocess.run(command, stderr=subprocess.PIPE, text=True)
    for line in result.stderr.splitlines():
        if not line.startswith("WARNING: Location"):
            print(line, file=sys.stderr)
    if result.returncode:
        raise subprocess.CalledProcessError(result.returncode, command)


# --- a server -----------------------------------------------------------------------------------


#: ``pulsar-serve`` with Pulsar's loggers at DEBUG (it configures none: only warnings would show),
#: so that the tests search everything Pulsar logs about a job (its setup, command line, files)
SERVE_LOGGING_ALL = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s [%(name)s] %(message)s')\n"
    "logging.getLogger('pulsar').setLevel(logging.DEBUG)\n"
    "from pulsar.scripts.serve import main\n"
    "sys.exit(main(sys.argv[1:]))"
)


class PulsarServer:
    """One Pulsar in ``workdir`` (created): its config, staging directory and log live there."""

    def __init__(
        self, workdir: str, venv: str = DEFAULT_VENV, private_token: Optional[str] = None, hidden=GALAXY_SIDE
    ) -> None:
        self.workdir = os.path.abspath(workdir)
        self.hidden = tuple(hidden)
        for path in self.hidden:
            for own in (self.workdir, os.path.abspath(venv)):
                if _within(own, path):
                    raise ValueError(f"{own} would be hidden from Pulsar under {path}")
        self.venv = venv
        self.private_token = private_token or f"pulsar-token-{secrets.token_hex(12)}"
        self.staging_directory = os.path.join(self.workdir, "staging")
        self.log_path = os.path.join(self.workdir, "pulsar.log")
        self.port = localgalaxy.free_port()
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def app_config(self) -> dict:
        return {
            "staging_directory": self.staging_directory,
            "persistence_directory": os.path.join(self.workdir, "persisted_data"),
            "private_token": self.private_token,
            "managers": {
                "_default_": {
                    "type": "queued_python",
                    "num_concurrent_jobs": 2,
                    # Pulsar's job script activates it: the tools' ``python`` is this venv's.
                    "galaxy_virtual_env": self.venv,
                }
            },
            # No tool_dependency_dir, no conda: the transfer tools have no requirements.
            "dependency_resolution": {"resolvers": []},
        }

    def write_config(self) -> str:
        os.makedirs(self.staging_directory, exist_ok=True)
        app_yml = os.path.join(self.workdir, "app.yml")
        localgalaxy.write_private(app_yml, yaml.safe_dump(self.app_config()))
        server_ini = os.path.join(self.workdir, "server.ini")
        localgalaxy.write_private(
            server_ini,
            f"[server:main]\nhost = 127.0.0.1\nport = {self.port}\n\n[app:main]\napp_config = {app_yml}\n",
        )
        return server_ini

    def start(self, timeout: float = 120) -> float:
        """Start and wait until it answers; returns the seconds that took."""
        install(self.venv)
        server_ini = self.write_config()
        command = _hiding(self.hidden, [pulsar_python(self.venv), "-c", SERVE_LOGGING_ALL, server_ini])
        # Pulsar's environment is not Galaxy's: only what a node would have.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.workdir, "PULSAR_CONFIG_DIR": self.workdir}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, env=env, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            return self.wait_until_up(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_until_up(self, timeout: float = 120) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"Pulsar exited with code {self.process.returncode}; see {self.log_path}")
            try:
                # Pulsar has loaded its app (managers, staging directory) once this answers (with
                # the token: every route, this one too, refuses requests without it).
                answer = requests.get(self.url + "healthz", params={"private_token": self.private_token}, timeout=5)
                if answer.ok:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"Pulsar did not answer {self.url} within {timeout} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None:
            localgalaxy.stop(self.process, timeout=20)
            self.process = None

    def log(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()


def _within(path: str, directory: str) -> bool:
    return os.path.commonpath([path, os.path.abspath(directory)]) == os.path.abspath(directory)


def _hiding(hidden: tuple, command: list[str]) -> list[str]:
    """``command`` in a mount namespace of its own where each of ``hidden`` is an empty tmpfs."""
    if not hidden:
        return command
    mounts = " && ".join(f"mount -t tmpfs -o mode=1777 tmpfs {shlex.quote(path)}" for path in hidden)
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        f'{mounts} && exec "$@"',
        "pulsar",
    ] + command


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["install"])
    parser.add_argument("--venv", default=DEFAULT_VENV)
    args = parser.parse_args(argv)
    seconds = install(args.venv)
    print(f"Pulsar venv {args.venv}: " + (f"installed in {seconds:.0f} s" if seconds else "already installed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A one-node Slurm cluster on 127.0.0.1, for the tests that send transfer jobs through a batch queue.

Galaxy's CLI job runner (``galaxy.jobs.runners.cli:ShellJobRunner`` with the ``Slurm`` job plugin)
submits with ``sbatch`` and watches with ``squeue``: what a Galaxy with Slurm but no slurm-drmaa
(Debian bookworm has none) runs. This module starts the three daemons such a queue needs, each a
process in a session of its own with everything in one work directory: ``munged`` (Slurm's
authentication, with a key of its own and its socket in the work directory), ``slurmctld`` (the
controller, state cleared at start) and ``slurmd`` (the one node, ``localhost``, running jobs as the
user who submitted them). Nothing of the machine's own ``/etc/slurm`` or ``/etc/munge`` is used.

The binaries come from the distribution (``apt-get install slurm-wlm munge``); the daemons run as
the current user (root in CI: ``SlurmUser=root``). A client (Galaxy's handler, a test) needs only
``env``: ``SLURM_CONF``, naming the slurm.conf, which names the munge socket.
"""

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Optional

from galaxy_cloud_storage_testing import localgalaxy

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
INSTALL_HINT = "apt-get install slurm-wlm munge"
NODE = "localhost"
PARTITION = "debug"
CPUS = 2
MEMORY_MIB = 4096  # what a job may ask for with --mem (not enforced: no cgroups)

SLURM_CONF = """\
# A one-node cluster for tests (galaxy_cloud_storage_testing/slurm_cluster.py).
ClusterName=gcs-test
SlurmctldHost={controller}(127.0.0.1)
SlurmctldPort={controller_port}
SlurmdPort={node_port}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={workdir}/slurmctld.pid
SlurmdPidFile={workdir}/slurmd.pid
SlurmctldLogFile={workdir}/slurmctld.log
SlurmdLogFile={workdir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
# No cgroups, no accounting: processes tracked through /proc, nothing confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
# The node's resources as written here, whatever the machine has; back in service after a restart.
SlurmdParameters=config_overrides
ReturnToService=2
# A cancelled job's processes get SIGKILL this many seconds after SIGTERM.
KillWait=5
MinJobAge=300
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mib} State=UNKNOWN
PartitionName={partition} Default=YES Nodes={node} MaxTime=INFINITE State=UP
"""
# Only read when a cgroup plugin is loaded; present so that slurmd never autodetects one.
CGROUP_CONF = "CgroupPlugin=cgroup/v1\nCgroupAutomount=no\n"


class SlurmNotInstalled(RuntimeError):
    pass


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None and not os.path.exists(f"/usr/sbin/{name}")]


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


@dataclass
class SlurmCluster:
    """munged, slurmctld and slurmd serving one node, configured in ``workdir``."""

    workdir: str
    processes: dict = field(default_factory=dict)  # daemon name -> subprocess.Popen

    @property
    def conf_path(self) -> str:
        return os.path.join(self.workdir, "slurm.conf")

    @property
    def munge_socket(self) -> str:
        return os.path.join(self.workdir, "munge", "munge.socket")

    @property
    def env(self) -> dict:
        """What a Slurm client (sbatch, squeue, scancel, scontrol, Galaxy's CLI runner) needs."""
        return {"SLURM_CONF": self.conf_path}

    # -- start and stop ----------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> "SlurmCluster":
        """Start the three daemons; returns once ``sinfo`` shows the node idle."""
        missing = missing_binaries()
        if missing:
            raise SlurmNotInstalled(f"Slurm or munge is not installed (no {', '.join(missing)}): run {INSTALL_HINT}")
        os.makedirs(self.workdir, exist_ok=True)
        try:
            self._start_munge(timeout)
            self._write_config()
            self.processes["slurmctld"] = localgalaxy.start(
                [_binary("slurmctld"), "-D", "-c", "-i", "-f", self.conf_path],
                os.path.join(self.workdir, "slurmctld.out"),
                self.workdir,
                self.env,
            )
            self._wait(lambda: self.scontrol("ping").returncode == 0, "slurmctld", timeout)
            self.processes["slurmd"] = localgalaxy.start(
                [_binary("slurmd"), "-D", "-N", NODE, "-f", self.conf_path],
                os.path.join(self.workdir, "slurmd.out"),
                self.workdir,
                self.env,
            )
            self._wait(self.node_is_idle, "slurmd", timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every daemon this cluster started (the node's jobs die with slurmd's session)."""
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is not None:
                localgalaxy.stop(process, timeout=15)

    def _start_munge(self, timeout: float) -> None:
        directory = os.path.dirname(self.munge_socket)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        key_file = os.path.join(directory, "munge.key")
        if not os.path.exists(key_file):
            with os.fdopen(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400), "wb") as fh:
                fh.write(secrets.token_bytes(1024))
        command = [
            _binary("munged"),
            "--foreground",
            "--force",  # as root, and in a directory munged would otherwise find too open
            f"--key-file={key_file}",
            f"--socket={self.munge_socket}",
            f"--pid-file={os.path.join(directory, 'munged.pid')}",
            f"--log-file={os.path.join(directory, 'munged.log')}",
            f"--seed-file={os.path.join(directory, 'munged.seed')}",
            "--num-threads=4",
        ]
        self.processes["munged"] = localgalaxy.start(command, os.path.join(directory, "munged.out"), self.workdir)
        self._wait(self._munge_answers, "munged", timeout)

    def _munge_answers(self) -> bool:
        encoded = subprocess.run(
            ["munge", "-n", "-S", self.munge_socket], capture_output=True, timeout=10, check=False
        )  # fmt: skip
        if encoded.returncode:
            return False
        decoded = subprocess.run(
            ["unmunge", "-S", self.munge_socket], input=encoded.stdout, capture_output=True, timeout=10, check=False
        )  # fmt: skip
        return decoded.returncode == 0

    def _write_config(self) -> None:
        state, spool = os.path.join(self.workdir, "state"), os.path.join(self.workdir, "spool")
        for directory in (state, spool):
            os.makedirs(directory, exist_ok=True)
        values = {
            "controller": socket.gethostname().split(".")[0],
            "controller_port": localgalaxy.free_port(),
            "node_port": localgalaxy.free_port(),
            "user": _user_name(),
            "munge_socket": self.munge_socket,
            "state": state,
            "spool": spool,
            "workdir": self.workdir,
            "node": NODE,
            "cpus": CPUS,
            "memory_mib": MEMORY_MIB,
            "partition": PARTITION,
        }
        with open(self.conf_path, "w") as fh:
            fh.write(SLURM_CONF.format(**values))
        with open(os.path.join(self.workdir, "cgroup.conf"), "w") as fh:
            fh.write(CGROUP_CONF)

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {process.returncode}; see {self.workdir}/*.log")
            try:
                if ready():
                    return
            except (subprocess.SubprocessError, OSError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{what} was not ready within {timeout} s; see the logs in {self.workdir}")

    # -- a client's view ---------------------------------------------------------------------------

    def run(self, *command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        return subprocess.run(
            list(command), env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout, check=False
        )  # fmt: skip

    def scontrol(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("scontrol", *args)

    def node_is_idle(self) -> bool:
        answer = self.run("sinfo", "-h", "-N", "-n", NODE, "-o", "%t")
        return answer.returncode == 0 and answer.stdout.strip() == "idle"

    def job_state(self, job_id: str) -> Optional[str]:
        """The job's state as the controller knows it (e.g. PENDING, RUNNING, CANCELLED,
        COMPLETED), or None once it forgot the job (MinJobAge after it ended)."""
        answer = self.scontrol("show", "job", "-o", str(job_id))
        if answer.returncode:
            return None
        fields = dict(item.split("=", 1) for item in answer.stdout.split() if "=" in item)
        return fields.get("JobState")

    def job_details(self, job_id: str) -> dict:
        """``scontrol show job``'s fields (JobState, Reason, StdOut, WorkDir, ...)."""
        answer = self.scontrol("show", "job", "-o", str(job_id))
        answer.check_returncode()
        return dict(item.split("=", 1) for item in answer.stdout.split() if "=" in item)

    def occupy_node(self, seconds: int = 600) -> str:
        """Submit a job that takes every CPU of the node, as a busy cluster would; returns its id
        once it runs. Jobs submitted after it wait in the queue (PENDING, Reason=Resources) until
        it is cancelled or its time is up."""
        answer = self.run("sbatch", "--parsable", "-c", str(CPUS), "-J", "busy", "-o", "/dev/null",
                          "--wrap", f"sleep {seconds}")  # fmt: skip
        answer.check_returncode()
        job_id = answer.stdout.strip().split(";")[0]
        self.wait_for_state(job_id, ("RUNNING",))
        return job_id

    def cancel(self, job_id: str) -> None:
        self.run("scancel", str(job_id)).check_returncode()

    def wait_for_state(self, job_id: str, states: tuple[str, ...], timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in states:
                return state
            time.sleep(0.2)
        raise AssertionError(f"Slurm job {job_id} is {state}, not one of {states}, after {timeout} s")


def _user_name() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name

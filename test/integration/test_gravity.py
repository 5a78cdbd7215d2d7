"""The plugin in a Galaxy run as admins run it: ``galaxyctl start`` with gravity's supervisord,
gunicorn with two workers (the plugin's routes through gravity's ``extra_args``), two job handlers
of their own, a Celery worker, PostgreSQL; a Swift cloud with a stored secret on 127.0.0.1.

Shown here: get and send keep every byte; their jobs ran on the handler processes, which serve no
HTTP and never mounted the plugin's routes (gunicorn's workers did); Celery ran Galaxy's own upload;
and in which process the job's cloud credentials were made.
"""

import hashlib
import json
import os
import random
import signal
import time
from urllib.parse import urlsplit

import pytest
import requests

from galaxy_cloud_storage.jobs import credentials_files
from galaxy_cloud_storage_testing import local_clouds, localgalaxy
from galaxy_cloud_storage_testing.gravity_galaxy import GravityGalaxy

pytestmark = pytest.mark.gravity

MOUNTED = "galaxy-cloud-storage"  # the plugin's start-up line: "galaxy-cloud-storage <version> mounted ..."
PEAKS = b"chr1\t100\t200\tpeak1\t0\t+\nchr1\t300\t400\tpeak2\t0\t-\n"
TABLE = "gene\tcount\nBRCA1\t12\nTP53\t\u00e9\t7\n".encode()
PASSWORD = "password123"
MiB = 1024 * 1024


class Client:
    """One Galaxy user over HTTP, with the admin beside it for what only admins see."""

    def __init__(self, url: str, key: str, admin_key: str):
        self.url, self.headers, self.admin_headers = url, {"x-api-key": key}, {"x-api-key": admin_key}

    def post(self, path: str, payload: dict) -> requests.Response:
        return requests.post(f"{self.url}/api/{path}", json=payload, headers=self.headers, timeout=120)

    def get(self, path: str, **params) -> requests.Response:
        return requests.get(f"{self.url}/api/{path}", params=params, headers=self.headers, timeout=120)

    def job(self, job_id: str) -> dict:
        """The job as the admin sees it (full details; the handler is in the database, see decode_id)."""
        response = requests.get(
            f"{self.url}/api/jobs/{job_id}", params={"full": True}, headers=self.admin_headers, timeout=60
        )
        response.raise_for_status()
        return response.json()

    def wait_for_job(self, job_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["state"] in ("ok", "error", "failed", "deleted"):
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")

    def dataset(self, dataset_id: str) -> dict:
        response = requests.get(f"{self.url}/api/datasets/{dataset_id}", headers=self.admin_headers, timeout=60)
        response.raise_for_status()
        return response.json()

    def dataset_sha256(self, dataset_id: str) -> str:
        """The SHA-256 of a dataset's bytes as Galaxy serves them, streamed (large datasets)."""
        digest = hashlib.sha256()
        with requests.get(
            f"{self.url}/api/datasets/{dataset_id}/display",
            params={"preview": False},
            headers=self.headers,
            stream=True,
            timeout=120,
        ) as response:
            assert response.status_code == 200, response.text
            for chunk in response.iter_content(MiB):
                digest.update(chunk)
        return digest.hexdigest()

    def dataset_bytes(self, dataset_id: str) -> bytes:
        response = self.get(f"datasets/{dataset_id}/display", preview=False)
        assert response.status_code == 200, response.text
        return response.content


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    started = local_clouds.start_cloud("openstack", str(tmp_path_factory.mktemp("swift")))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def galaxy(tmp_path_factory, cloud):
    server = GravityGalaxy(str(tmp_path_factory.mktemp("gravity")), {"providers": {"openstack": cloud.settings}})
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(galaxy):
    bootstrap = localgalaxy.admin_key(galaxy.galaxy_yml)
    admin_key = localgalaxy.user_api_key(galaxy.url, bootstrap, "admin@galaxy.local", PASSWORD)
    user_key = localgalaxy.user_api_key(galaxy.url, bootstrap, "user@example.org", PASSWORD)
    return Client(galaxy.url, user_key, admin_key)


@pytest.fixture(scope="module")
def history_id(client):
    created = client.post("histories", {"name": "gravity"})
    assert created.status_code == 200, created.text
    return created.json()["id"]


@pytest.fixture(scope="module")
def authz_id(client, cloud):
    created = client.post("cloud/authz", {"provider": "openstack", "config": cloud.authz_config})
    assert created.status_code == 200, created.text
    return created.json()["id"]


@pytest.fixture(scope="module")
def transfers(client, cloud, history_id, authz_id):
    """A get of an object, an upload through Galaxy's own data-fetch tool, and a send of that
    upload; the get and the upload run at the same time. Returns their finished jobs and datasets."""
    cloud.admin.put_object(cloud.bucket, "peaks/rep1.bed", PEAKS)
    got = client.post(
        "cloud/storage/get",
        {"history_id": history_id, "authz_id": authz_id, "bucket": cloud.bucket, "objects": ["peaks/rep1.bed"]},
    )
    assert got.status_code == 200, got.text
    uploaded = client.post(
        "tools/fetch",
        {
            "history_id": history_id,
            "targets": [
                {
                    "destination": {"type": "hdas"},
                    "elements": [{"src": "pasted", "paste_content": TABLE.decode(), "name": "counts.tsv"}],
                }
            ],
        },
    )
    assert uploaded.status_code == 200, uploaded.text
    get_job = client.wait_for_job(got.json()[0]["job_id"])
    upload_job = client.wait_for_job(uploaded.json()["jobs"][0]["id"])
    assert upload_job["state"] == "ok", upload_job
    upload_dataset = uploaded.json()["outputs"][0]["id"]
    sent = client.post(
        "cloud/storage/send",
        {"history_id": history_id, "authz_id": authz_id, "bucket": cloud.bucket, "dataset_ids": [upload_dataset]},
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["failed_dataset_labels"] == [], sent.text
    (label,) = [json.loads(label) for label in sent.json()["sent_dataset_labels"]]
    send_job = client.wait_for_job(label["job_id"])
    return {
        "get": get_job,
        "get_dataset": got.json()[0]["id"],
        "upload": upload_job,
        "upload_dataset": upload_dataset,
        "send": send_job,
        "sent_object": label["object"],
    }


def listening_tcp_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on: its socket descriptors matched with the kernel's
    table of listening sockets (state 0A in /proc/net/tcp{,6})."""
    listening = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":
                    listening[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    ports = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:[") and target[8:-1] in listening:
            ports.add(listening[target[8:-1]])
    return ports


def job_lines(log: str, job_id: int, marker: str) -> list[str]:
    """Lines of a Galaxy log about job ``job_id`` (Galaxy writes ``(<id>) ...``) that contain ``marker``."""
    return [line for line in log.splitlines() if f"({job_id}) " in line and marker in line]


def test_get_and_send_keep_every_byte(client, cloud, transfers):
    assert transfers["get"]["state"] == "ok", transfers["get"]
    assert client.dataset_bytes(transfers["get_dataset"]) == PEAKS
    assert transfers["send"]["state"] == "ok", transfers["send"]
    assert transfers["sent_object"] == "counts.tsv"
    assert cloud.admin.get_object(cloud.bucket, "counts.tsv") == TABLE
    assert client.dataset_bytes(transfers["upload_dataset"]) == TABLE


def test_transfer_jobs_ran_on_the_separate_handlers(galaxy, transfers):
    for name in ("get", "send"):
        job_id = galaxy.decode_id(transfers[name]["id"])
        (handler,) = galaxy.query("SELECT handler FROM job WHERE id = :id", id=job_id)[0]
        assert handler in galaxy.handler_names, (name, handler)
        assert job_lines(galaxy.log(handler), job_id, "Job dispatched"), (name, handler)
        assert not job_lines(galaxy.log("gunicorn"), job_id, "Job dispatched"), name


def test_handlers_serve_no_http_and_have_no_plugin_routes(galaxy, transfers):
    pids = dict(galaxy.query("SELECT server_name, pid FROM worker_process"))
    assert set(pids) == {"main.1", "main.2", *galaxy.handler_names}, pids  # gunicorn's two workers, two handlers
    for worker in ("main.1", "main.2"):
        assert galaxy.port in listening_tcp_ports(pids[worker]), worker
        assert plugin_mounted_lines(galaxy.log("gunicorn"), worker), worker
    for handler in galaxy.handler_names:
        assert listening_tcp_ports(pids[handler]) == set(), handler
        assert not plugin_mounted_lines(galaxy.log(handler), handler), handler


def plugin_mounted_lines(log: str, process_name: str) -> list[str]:
    """The plugin's start-up line (mount.py: "galaxy-cloud-storage <version> mounted <n> routes")
    as written by the Galaxy process ``process_name`` (Galaxy's log format names it ``pN:<name>``)."""
    return [
        line
        for line in log.splitlines()
        if f"pN:{process_name}," in line and f"{MOUNTED} " in line and " mounted " in line
    ]


def test_celery_ran_galaxys_upload(galaxy, transfers):
    upload_id = galaxy.decode_id(transfers["upload"]["id"])
    celery_log = galaxy.log("celery").splitlines()
    # Celery's report of the data-fetch task names the job's working directory, .../<job id>
    fetched = [
        line
        for line in celery_log
        if "Task galaxy.fetch_data[" in line and " succeeded " in line and line.rstrip().endswith(f"/{upload_id}'")
    ]
    assert fetched, "\n".join(line for line in celery_log if "Task " in line)
    for process in ("gunicorn", *galaxy.handler_names):
        assert not job_lines(galaxy.log(process), upload_id, "Job dispatched"), process


def test_credentials_minted_in_a_web_process_as_the_job_started(galaxy, transfers):
    """The plugin logs "Minting cloud credentials for transfer job <id> as it starts" (tickets.py)
    in the process that mints: one of gunicorn's workers, which the job called, not a handler."""
    for name in ("get", "send"):
        job_id = galaxy.decode_id(transfers[name]["id"])
        line = f"Minting cloud credentials for transfer job {job_id} "
        minting = [entry for entry in galaxy.log("gunicorn").splitlines() if line in entry]
        assert len(minting) == 1 and ("pN:main.1," in minting[0] or "pN:main.2," in minting[0]), minting
        for handler in galaxy.handler_names:
            assert line not in galaxy.log(handler), (name, handler)


def test_no_secret_left_in_any_file(galaxy, cloud, transfers):
    """The stored Swift key (kept in the vault, in PostgreSQL) is in no file of this Galaxy: not in
    the logs of any process, the job directories (Galaxy removes those of jobs that ended ok, ticket
    files with them), or the datasets."""
    holding = []
    for parent, _, names in os.walk(galaxy.directory):
        for name in names:
            path = os.path.join(parent, name)
            if os.path.isfile(path):
                with open(path, "rb") as fh:
                    if any(secret.encode() in fh.read() for secret in cloud.secrets):
                        holding.append(os.path.relpath(path, galaxy.directory))
    assert holding == []


# --- faults of the deployment: the job handlers restarted under transfer jobs ---------------------
#
# What an admin's `galaxyctl restart handler` does to a transfer job, from Galaxy 26.1's code:
# supervisord sends each handler SIGTERM (and waits gravity's stop_timeout, 65 s, before SIGKILL);
# galaxy-main shuts down; the local runner waits up to monitor_thread_join_timeout (30 s by default)
# for its worker threads, i.e. for its running jobs, then signals their process groups (SIGTERM,
# and SIGKILL a second later only if its own child, the job script, is still there: it is not, so
# the transfer, which unwinds on SIGTERM, exits by itself within transfer.job.STOP_GRACE) and fails
# them ("job terminated by Galaxy shutdown"). A job the dying
# handler did not get to fail is still `running` when the handler starts again, and
# LocalJobRunner.recover fails it ("This job was killed when Galaxy was restarted"): local jobs
# are never re-attached or re-run. Jobs not yet dispatched to a runner are queued again
# (JobHandlerQueue._check_job_at_startup). A transfer that ends within the 30 s ends normally; to
# reach the case where Galaxy kills it (any transfer of more than 30 s, e.g. a few GiB), the test
# freezes the Swift proxy (SIGSTOP) once bytes are flowing, so the transfers are held mid-way.

LARGE_OBJECT = "restart/large.bin"
LARGE_SIZE = 400 * MiB  # 25 Swift segments of 16 MiB when sent back
KILLED_MESSAGES = ("job terminated by Galaxy shutdown", "This job was killed when Galaxy was restarted")


def object_bytes(size: int, seed: int) -> bytes:
    """Incompressible bytes, the same for a seed (a truncated or shifted copy differs in its hash)."""
    generator = random.Random(seed)  # randbytes of more than 256 MiB at once overflows a C int
    return b"".join(generator.randbytes(min(MiB, size - start)) for start in range(0, size, MiB))


def swift_proxy_pid(cloud) -> int:
    """The Swift proxy's process (one, workers = 0): the one listening on its auth URL's port."""
    port = urlsplit(cloud.settings["v1_auth_url"]).port
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if port in listening_tcp_ports(int(entry)):
                    return int(entry)
            except OSError:  # gone meanwhile, or not ours to read
                continue
    raise AssertionError(f"no process listens on the Swift proxy's port {port}")


def partial_downloads(directory: str) -> list[tuple[str, int]]:
    """The transfer's partial files (StorageBackend.download: ``.<dataset file>.<random>.part``)."""
    found = []
    for parent, _, names in os.walk(directory):
        for name in names:
            if name.endswith(".part"):
                path = os.path.join(parent, name)
                try:
                    found.append((path, os.path.getsize(path)))
                except OSError:
                    continue
    return found


def process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(condition, what: str, timeout: float = 300, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s: {what}")


def job_row(galaxy, job_id: str) -> dict:
    """What Galaxy's database says of a job (the API has no ``info``, the reason a job failed)."""
    rows = galaxy.query(
        "SELECT state, handler, info, job_runner_external_id FROM job WHERE id = :id", id=galaxy.decode_id(job_id)
    )
    return dict(rows[0]._mapping)


@pytest.fixture(scope="module")
def large_object(cloud):
    data = object_bytes(LARGE_SIZE, seed=1)
    cloud.admin.put_object(cloud.bucket, LARGE_OBJECT, data)
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def get_while_handlers_down(galaxy, client, cloud, history_id, authz_id, large_object):
    """A get requested while both handlers are stopped, then the handlers started again."""
    galaxy.handlers("stop")
    try:
        requested = client.post(
            "cloud/storage/get",
            {"history_id": history_id, "authz_id": authz_id, "bucket": cloud.bucket, "objects": [LARGE_OBJECT]},
        )
        assert requested.status_code == 200, requested.text
        (item,) = requested.json()
        # Nobody to claim it: a web process never does with db-skip-locked; watch it wait a while.
        waiting = [job_row(galaxy, item["job_id"])]
        time.sleep(10)
        waiting.append(job_row(galaxy, item["job_id"]))
        job_directory_made = os.path.exists(galaxy.job_directory(galaxy.decode_id(item["job_id"])))
    finally:
        galaxy.handlers("start")
    job = client.wait_for_job(item["job_id"], timeout=600)
    return {"item": item, "waiting": waiting, "job_directory_made": job_directory_made, "job": job}


def test_a_get_requested_while_the_handlers_are_down_waits_then_runs(
    galaxy, client, get_while_handlers_down, large_object
):
    waiting, job = get_while_handlers_down["waiting"], get_while_handlers_down["job"]
    # New, and claimed by no handler process: the web worker tags it for the pool
    # ("_default_"), from which a running handler takes it (db-skip-locked).
    assert [(row["state"], row["handler"]) for row in waiting] == [("new", "_default_")] * 2, waiting
    assert not get_while_handlers_down["job_directory_made"]  # not prepared: no ticket was written
    assert job["state"] == "ok", job
    assert job_row(galaxy, job["id"])["handler"] in galaxy.handler_names
    assert client.dataset_sha256(get_while_handlers_down["item"]["id"]) == large_object


def restart_handlers_mid_transfer(galaxy, client, cloud, job_id: str, moving) -> dict:
    """``galaxyctl restart handler`` once job ``job_id`` is ``moving()`` bytes; Swift held still
    meanwhile (see above), and let go once Galaxy has killed the job. One transfer per restart: a
    get and a send started together do not reliably overlap (a 400 MiB get can end before a send
    has put its first segment). Returns the job as it ended, and what was seen on the way."""
    try:
        wait_until(moving, "the transfer moving bytes", timeout=300, interval=0.1)
    except AssertionError as e:
        raise AssertionError(f"{e}; the job: {job_row(galaxy, job_id)}") from e
    at_restart = job_row(galaxy, job_id)
    proxy = swift_proxy_pid(cloud)
    os.kill(proxy, signal.SIGSTOP)
    try:
        partial_at_restart = partial_downloads(galaxy.directory)
        started = time.monotonic()
        restart = galaxy.galaxyctl_in_background("restart", "handler")
        process_group = int(at_restart["job_runner_external_id"])
        wait_until(lambda: not process_group_alive(process_group), "Galaxy killing the job", timeout=240, interval=0.5)
        killed_after = time.monotonic() - started
    finally:
        os.kill(proxy, signal.SIGCONT)
    restart_output, _ = restart.communicate(timeout=600)
    assert restart.returncode == 0, restart_output
    ended = client.wait_for_job(job_id, timeout=600)
    return {
        "at_restart": at_restart,
        "partial_at_restart": partial_at_restart,
        "killed_after": killed_after,
        "ended": ended,
        "row": job_row(galaxy, job_id),
        "job_directory": galaxy.job_directory(galaxy.decode_id(job_id)),
    }


@pytest.fixture(scope="module")
def get_killed_by_a_restart(galaxy, client, cloud, history_id, authz_id, large_object, get_while_handlers_down):
    got = client.post(
        "cloud/storage/get",
        {"history_id": history_id, "authz_id": authz_id, "bucket": cloud.bucket, "objects": [LARGE_OBJECT]},
    )
    assert got.status_code == 200, got.text
    (item,) = got.json()

    def downloading() -> bool:
        return any(size > 0 for _, size in partial_downloads(galaxy.directory))

    return {**restart_handlers_mid_transfer(galaxy, client, cloud, item["job_id"], downloading), "dataset": item["id"]}


@pytest.fixture(scope="module")
def send_killed_by_a_restart(galaxy, client, cloud, history_id, authz_id, get_while_handlers_down):
    sent = client.post(
        "cloud/storage/send",
        {
            "history_id": history_id,
            "authz_id": authz_id,
            "bucket": cloud.bucket,
            "dataset_ids": [get_while_handlers_down["item"]["id"]],
        },
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["failed_dataset_labels"] == [], sent.text
    (label,) = [json.loads(label) for label in sent.json()["sent_dataset_labels"]]
    sent_object = label["object"]  # the dataset's name, made unique in the bucket
    assert sent_object != LARGE_OBJECT, label

    def uploading() -> bool:
        return bool(cloud.admin.list_keys(f"{cloud.bucket}_segments", prefix=f"{sent_object}/"))

    return {**restart_handlers_mid_transfer(galaxy, client, cloud, label["job_id"], uploading), "object": sent_object}


def test_handler_restart_kills_a_running_get_which_fails_with_galaxys_message(client, get_killed_by_a_restart):
    restarted = get_killed_by_a_restart
    assert restarted["at_restart"]["state"] == "running", restarted["at_restart"]
    # Bytes had arrived (the partial file may already be whole, not yet renamed into the dataset).
    assert any(size > 0 for _, size in restarted["partial_at_restart"]), restarted["partial_at_restart"]
    # Galaxy waited its monitor_thread_join_timeout (30 s) for the job before killing it.
    assert restarted["killed_after"] >= 30, restarted["killed_after"]
    assert restarted["ended"]["state"] == "error", restarted["ended"]
    assert restarted["row"]["info"].startswith(KILLED_MESSAGES), restarted["row"]
    dataset = client.dataset(restarted["dataset"])
    assert dataset["state"] == "error", dataset
    assert dataset["file_size"] == 0, dataset  # never the bytes it had when killed


def test_handler_restart_kills_a_running_send_which_leaves_no_partial_object(
    cloud, large_object, send_killed_by_a_restart
):
    restarted = send_killed_by_a_restart
    assert restarted["at_restart"]["state"] == "running", restarted["at_restart"]
    assert restarted["ended"]["state"] == "error", restarted["ended"]
    assert restarted["row"]["info"].startswith(KILLED_MESSAGES), restarted["row"]
    # The manifest is written last, after every segment: a killed send makes no object, unless its
    # manifest had reached Swift before Swift was frozen (Swift then completes that PUT, the client
    # gone or not), and then the object is whole. Never a part of it.
    if restarted["object"] in cloud.admin.list_keys(cloud.bucket):
        stored = cloud.admin.get_object(cloud.bucket, restarted["object"])
        assert hashlib.sha256(stored).hexdigest() == large_object
    else:
        with pytest.raises(KeyError):
            cloud.admin.get_object(cloud.bucket, restarted["object"])


def test_killed_transfer_jobs_leave_no_ticket_and_no_secret(
    galaxy, cloud, get_killed_by_a_restart, send_killed_by_a_restart
):
    """The job redeemed (and deleted) its ticket as it started. Whether Galaxy removed the failed
    job's directory depends on who failed it (JobWrapper.fail cleans up, with cleanup_job's default
    ``always``; recovery's change of state does not): either way, no ticket is left in it, and no
    secret in any file of this Galaxy."""
    for restarted in (get_killed_by_a_restart, send_killed_by_a_restart):
        assert credentials_files(restarted["job_directory"]) == [], restarted["job_directory"]
    assert files_holding(galaxy.directory, cloud.secrets) == []


def files_holding(directory: str, secrets: list[str]) -> list[str]:
    """Files under ``directory`` holding any of ``secrets``, read in blocks (datasets of 400 MiB)."""
    needles = [secret.encode() for secret in secrets]
    overlap = max(len(needle) for needle in needles)
    holding = []
    for parent, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(parent, name)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            with open(path, "rb") as fh:
                tail = b""
                while block := fh.read(16 * MiB):
                    window = tail + block
                    if any(needle in window for needle in needles):
                        holding.append(os.path.relpath(path, directory))
                        break
                    tail = window[-overlap:]
    return holding

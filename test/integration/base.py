"""A real, embedded Galaxy 26.1 with the plugin mounted through ``init_fast_app``."""

import os
import shutil
import tempfile
import time
from typing import Optional
from urllib.parse import urlsplit

import galaxy.tools
import yaml
from cryptography.fernet import Fernet
from galaxy.model import Job, User, UserAuthnzToken
from galaxy_test.driver.integration_util import IntegrationTestCase
from sqlalchemy import select

from galaxy_cloud_storage.jobs import credentials_files
from galaxy_cloud_storage.mount import init_fast_app
from galaxy_cloud_storage.tools import tool_conf_xml
from galaxy_cloud_storage.transfer.progress import INTERVAL_VARIABLE
from galaxy_cloud_storage_testing import localgalaxy
from galaxy_cloud_storage_testing.fault_proxy import FaultProxy
from galaxy_cloud_storage_testing.local_clouds import LocalCloud, OidcIdentity, start_cloud

HERE = os.path.dirname(__file__)
GALAXY_CONFIG_DIR = os.path.join(HERE, "galaxy_config")
PORT_VARIABLES = ("GALAXY_TEST_HOST", "GALAXY_TEST_PORT", "GALAXY_TEST_PORT_RANDOM")
BUNDLED_TOOLS = os.path.join(os.path.dirname(galaxy.tools.__file__), "bundled")


def write_gated_job_conf(directory: str) -> tuple[str, str]:
    """A job_conf.yml in ``directory`` whose jobs, once prepared, wait before their tool while the
    gate file exists, as in a batch queue (Galaxy runs an environment's ``execute`` in the job
    script, before the tool); returns its path and the gate's."""
    gate = os.path.join(directory, "jobs-wait-while-this-exists")
    job_conf = os.path.join(directory, "job_conf.yml")
    with open(job_conf, "w") as fh:
        yaml.safe_dump({
            "runners": {"local": {"load": "galaxy.jobs.runners.local:LocalJobRunner", "workers": 2}},
            "execution": {"default": "gated", "environments": {"gated": {
                "runner": "local", "env": [{"execute": f'while [ -e "{gate}" ]; do sleep 0.2; done'}],
            }}},
        }, fh)  # fmt: skip
    return job_conf, gate


class CloudStorageTestCase(IntegrationTestCase):
    """Galaxy with the plugin; subclasses set ``plugin_config`` (the admin's YAML as a dict)."""

    init_fast_app = staticmethod(init_fast_app)
    plugin_config: dict = {}
    with_vault = True
    #: where Galaxy answers, and where its jobs redeem their tickets (galaxy_infrastructure_url)
    galaxy_url: str
    galaxy_port: Optional[int] = None

    @classmethod
    def setUpClass(cls):
        # The driver picks Galaxy's port only as it starts the server, after Galaxy's config is
        # made: the port is chosen here (or by a base before this one, as cls.galaxy_port) and
        # given to the driver.
        port = cls.__dict__.get("galaxy_port") or localgalaxy.free_port()
        cls.galaxy_url = f"http://127.0.0.1:{port}"
        saved = {name: os.environ.get(name) for name in PORT_VARIABLES}
        os.environ.pop("GALAXY_TEST_PORT_RANDOM", None)
        os.environ.update(GALAXY_TEST_HOST="127.0.0.1", GALAXY_TEST_PORT=str(port))
        try:
            super().setUpClass()
        finally:  # the next test class picks its port as before
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    @classmethod
    def handle_galaxy_config_kwds(cls, config):
        super().handle_galaxy_config_kwds(config)
        # The driver's defaults point into a Galaxy source checkout; this is a pip install.
        workdir = tempfile.mkdtemp(prefix="gcs-test-config-")
        plugin_tool_conf = os.path.join(workdir, "cloud_storage_tool_conf.xml")
        with open(plugin_tool_conf, "w") as fh:
            fh.write(tool_conf_xml())
        config["tool_config_file"] = f"{os.path.join(GALAXY_CONFIG_DIR, 'tool_conf.xml')},{plugin_tool_conf}"
        # The transfer tools run the plugin's Python in the job: Galaxy's venv, as the sample says.
        config["preserve_python_environment"] = "legacy_and_local"
        config["tool_data_table_config_path"] = os.path.join(GALAXY_CONFIG_DIR, "tool_data_table_conf.xml")
        config["data_manager_config_file"] = ""
        config["webhooks_dir"] = None
        config["tool_path"] = BUNDLED_TOOLS
        # The transfer jobs redeem their tickets for credentials there (tickets.py).
        config["galaxy_infrastructure_url"] = cls.galaxy_url
        # No network here: nothing may try to download a container tool at start.
        config.update(conda_auto_init=False, enable_mulled_containers=False, involucro_auto_init=False)
        if cls.with_vault:
            vault_file = os.path.join(workdir, "vault_conf.yml")
            with open(vault_file, "w") as fh:
                yaml.safe_dump({"type": "database", "encryption_keys": [Fernet.generate_key().decode()]}, fh)
            config["vault_config_file"] = vault_file
        # Jobs run as the admin's sample routes them: the local runner, running jobs' output shown
        # live; a progress line every 0.5 s, so that a transfer of seconds shows some.
        job_conf = localgalaxy.read_sample("job_conf.yml.sample")
        for environment in job_conf["execution"]["environments"].values():
            environment.setdefault("env", []).append({"name": INTERVAL_VARIABLE, "value": "0.5"})
        config["job_config_file"] = os.path.join(workdir, "job_conf.yml")
        with open(config["job_config_file"], "w") as fh:
            yaml.safe_dump(job_conf, fh)
        plugin_file = os.path.join(workdir, "cloud_storage_conf.yml")
        with open(plugin_file, "w") as fh:
            yaml.safe_dump(cls.plugin_settings(), fh)
        config["cloud_storage_config_file"] = plugin_file

    @classmethod
    def plugin_settings(cls) -> dict:
        """The admin's YAML for this class's Galaxy; override to add endpoints known at start."""
        return cls.plugin_config

    # -- helpers the tests share -------------------------------------------------------------------

    def add_oidc_identity(self, email: str, provider: str = "oidc", uid: str = None) -> str:
        """Give ``email``'s user an OIDC identity as Galaxy stores one after a login; returns its
        encoded id. (The S3 issue replaces this with a real login through an OpenID provider.)"""
        session = self._app.model.session
        user = session.scalars(select(User).where(User.email == email)).one()
        token = UserAuthnzToken(
            provider=provider,
            uid=uid or f"{email}-{provider}",
            extra_data={"id_token": "header.payload.signature", "access_token": "token"},
            user=user,
        )
        session.add(token)
        session.commit()
        return self._app.security.encode_id(token.id)

    def current_email(self) -> str:
        return self._get("users/current").json()["email"]

    def assert_error(self, response, status, *words):
        """A Galaxy error: this status, ``{"err_msg", "err_code"}``, and these words in the message."""
        assert response.status_code == status, f"{response.status_code} {response.text}"
        body = response.json()
        assert set(body) >= {"err_msg", "err_code"}, body
        for word in words:
            assert word in body["err_msg"], body["err_msg"]

    def wait_for_job(self, job_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self._get(f"jobs/{job_id}", data={"full": True}).json()
            if job["state"] in ("ok", "error", "failed", "deleted"):
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")

    def wait_for_state(self, job_id: str, state: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (found := self._get(f"jobs/{job_id}").json()["state"]) != state:
            assert time.monotonic() < deadline, f"job {job_id} still {found}, not {state}, after {timeout} s"
            time.sleep(0.2)

    def dataset_bytes(self, dataset_id: str) -> bytes:
        response = self._get(f"datasets/{dataset_id}/display", data={"preview": False})
        assert response.status_code == 200, response.text
        return response.content

    def history_size(self, history_id: Optional[str] = None) -> int:
        return len(self._get(f"histories/{history_id or self.history_id}/contents").json())

    # -- the job directory ----------------------------------------------------------------------

    def job_directory(self, job_id: str) -> str:
        session = self._app.model.session
        session.expire_all()
        job = session.get(Job, self._app.security.decode_id(job_id))
        return self._app.object_store.get_filename(job, base_dir="job_work", dir_only=True, obj_dir=True)

    def wait_for_credentials(self, job_id: str, timeout: float = 60) -> tuple[str, list[str]]:
        """The job's directory and its credentials files (its ticket), once the handler has
        written them: the job is prepared."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                directory = self.job_directory(job_id)
            except Exception:  # not made yet
                directory = None
            if directory and (found := credentials_files(directory)):
                return directory, found
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} never got its credentials file")

    def job_count(self) -> int:
        return len(self._get("jobs", data={"limit": 1000}).json())


#: The setting that names each cloud's storage endpoint (Swift's: its v1 auth, whose answer names
#: the storage URL by the address it was asked at).
STORAGE_ENDPOINT_SETTINGS = {
    "aws": "s3_endpoint_url",
    "azure": "blob_endpoint",
    "gcp": "storage_endpoint",
    "openstack": "v1_auth_url",
}


class LocalCloudTestCase(CloudStorageTestCase):
    """Galaxy with the plugin and ``provider``'s local cloud (galaxy_cloud_storage_testing/local_clouds.py), started
    before Galaxy (whose config names its endpoints) and stopped after it."""

    provider: str = ""
    #: more for local_clouds.start_cloud (e.g. Swift behind Keystone: {"keystone": True})
    cloud_options: dict = {}
    cloud: LocalCloud
    #: whether Galaxy reaches the storage server through a relay that tests can make fail
    #: (``fault_proxy``, passing everything through until a test adds a fault)
    through_fault_proxy: bool = False
    fault_proxy: Optional[FaultProxy] = None

    @classmethod
    def cloud_identity(cls) -> Optional[OidcIdentity]:
        """The login the cloud is to trust (a secretless authorization), or None (a stored secret)."""
        return None

    @classmethod
    def setUpClass(cls):
        cls.cloud_dir = tempfile.mkdtemp(prefix=f"gcs-{cls.provider}-")
        cls.cloud = start_cloud(cls.provider, cls.cloud_dir, cls.cloud_identity(), **cls.cloud_options)
        try:
            if cls.through_fault_proxy:
                cls.fault_proxy = relay_storage(cls.cloud)
                cls.cloud.stoppers.append(cls.fault_proxy.close)
            super().setUpClass()
        except BaseException:
            cls.cloud.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.cloud.stop()
            shutil.rmtree(cls.cloud_dir, ignore_errors=True)

    @classmethod
    def plugin_settings(cls) -> dict:
        return {"providers": {cls.provider: cls.cloud.settings}}

    def tearDown(self):
        if self.fault_proxy is not None:
            self.fault_proxy.clear()  # the next test finds a plain relay
        super().tearDown()


def relay_storage(cloud: LocalCloud) -> FaultProxy:
    """A fault_proxy.FaultProxy in front of ``cloud``'s storage server, named in its settings in
    the server's place (with TLS where the server has it: Azurite, for bearer tokens)."""
    setting = STORAGE_ENDPOINT_SETTINGS[cloud.provider]
    url = cloud.settings[setting]
    port = urlsplit(url.replace("{account}", "account")).port
    proxy = FaultProxy(port, tls=getattr(cloud.admin, "https", None) if url.startswith("https:") else None)
    cloud.settings = {**cloud.settings, setting: url.replace(f"127.0.0.1:{port}", f"127.0.0.1:{proxy.port}")}
    return proxy

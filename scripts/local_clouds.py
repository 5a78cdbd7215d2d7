"""The four clouds on 127.0.0.1, each behind one interface, for the tests, the demo and the benchmark.

``start_cloud(provider, workdir)`` starts that cloud's storage server (and the token endpoint its
credentials go through), makes a bucket the user may use and one they may not, and returns a
``LocalCloud``: the admin's settings for the plugin, an authorization config for a user, and the
server's own access (``admin``) for checking what Galaxy wrote.
"""

import os
from dataclasses import (
    dataclass,
    field,
)
from typing import Callable, Optional

import localgalaxy
from storage_servers import StorageAdmin

PROVIDERS = ("aws", "azure", "gcp", "openstack")
BUCKET = "galaxy-lab-data"
OTHER_BUCKET = "someone-elses-data"


@dataclass
class LocalCloud:
    provider: str
    admin: StorageAdmin
    #: the ``providers.<provider>`` section of cloud_storage_conf.yml
    settings: dict
    #: an authorization config (POST /api/cloud/authz ``config``) that may use BUCKET only
    authz_config: dict
    bucket: str = BUCKET
    other_bucket: str = OTHER_BUCKET
    #: what the authorization is made of: a stored secret or an exchange of the user's login
    mode: str = ""
    #: the stored secrets of authz_config, to search for where they must not be
    secrets: list[str] = field(default_factory=list)
    stoppers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception as e:  # stop the others in any case
                print(f"stopping {self.provider}: {e}")


def start_cloud(provider: str, workdir: str) -> LocalCloud:
    """Start ``provider``'s local server in ``workdir`` (created), with BUCKET and OTHER_BUCKET."""
    os.makedirs(workdir, exist_ok=True)
    starter = {"aws": _start_aws}[provider]
    return starter(workdir)


def _start_aws(workdir: str) -> LocalCloud:
    import moto_aws

    port = localgalaxy.free_port()
    url = f"http://127.0.0.1:{port}"
    process = moto_aws.start(port, os.path.join(workdir, "moto.log"), workdir)
    cloud = LocalCloud("aws", None, {}, {}, stoppers=[lambda: localgalaxy.stop(process)])  # type: ignore[arg-type]
    try:
        moto_aws.wait_until_up(url, process)
        cloud.admin = admin = moto_aws.make_admin(url)
        admin.create_bucket(BUCKET)
        admin.create_bucket(OTHER_BUCKET)
        key_id, secret = admin.create_bucket_user("galaxy-user", BUCKET)
    except BaseException:
        cloud.stop()
        raise
    cloud.settings = {**admin.plugin_settings(), "allow_stored_secrets": True}
    cloud.authz_config = {"access_key_id": key_id, "secret_access_key": secret}
    cloud.mode, cloud.secrets = "static_key", [secret]
    return cloud


def optional(provider: Optional[str]) -> tuple[str, ...]:
    """The providers named by a comma-separated list (all when None or empty)."""
    if not provider:
        return PROVIDERS
    chosen = tuple(p.strip() for p in provider.split(",") if p.strip())
    unknown = [p for p in chosen if p not in PROVIDERS]
    if unknown:
        raise ValueError(f"unknown provider(s) {', '.join(unknown)}; choose from {', '.join(PROVIDERS)}")
    return chosen

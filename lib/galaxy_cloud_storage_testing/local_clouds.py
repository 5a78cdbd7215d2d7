"""The four clouds on 127.0.0.1, each behind one interface, for the tests, the demo and the benchmark.

``start_cloud(provider, workdir)`` starts that cloud's storage server (and the token endpoint its
credentials go through), makes a bucket the user may use and one they may not, and returns a
``LocalCloud``: the admin's settings for the plugin, an authorization config for a user, and the
server's own access (``admin``) for checking what Galaxy wrote.
"""

import os
from dataclasses import dataclass, field
from typing import Callable, Optional

from galaxy_cloud_storage_testing import localgalaxy
from galaxy_cloud_storage_testing.storage_servers import StorageAdmin

PROVIDERS = ("aws", "azure", "gcp", "openstack")
BUCKET = "galaxy-lab-data"
OTHER_BUCKET = "someone-elses-data"


@dataclass(frozen=True)
class OidcIdentity:
    """Whose login the clouds are to trust: tokens of ``issuer`` for ``audience`` (Galaxy's client
    id at the provider) with this ``subject``."""

    issuer: str
    audience: str
    subject: str


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
    #: an authorization config that may use BUCKET but not OTHER_BUCKET, when authz_config can't
    #: show both "missing" and "denied" (Azure and Swift answer 403 for a missing container to a
    #: credential scoped to another one, as they do in production)
    limited_authz_config: Optional[dict] = None
    #: the stored secrets of the authorizations, to search for where they must not be
    secrets: list[str] = field(default_factory=list)
    #: Keystone federation: the OIDC middleware's record of the access tokens it validated
    validations_path: Optional[str] = None
    stoppers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception as e:  # stop the others in any case
                print(f"stopping {self.provider}: {e}")


def start_cloud(provider: str, workdir: str, identity: Optional[OidcIdentity] = None, **options) -> LocalCloud:
    """Start ``provider``'s local server in ``workdir`` (created), with BUCKET and OTHER_BUCKET.

    Without ``identity`` the authorization holds a stored secret; with one, where the cloud can
    trust an OIDC login (AWS, Azure, GCP), the authorization is secretless: the cloud's token
    endpoint exchanges that identity's id_token. Swift: v1 auth with a stored key, or with
    ``keystone=True`` a real Keystone and a stored application credential.
    """
    os.makedirs(workdir, exist_ok=True)
    starter = {"aws": _start_aws, "azure": _start_azure, "gcp": _start_gcp, "openstack": _start_swift}[provider]
    return starter(workdir, identity, **options)


def _start_aws(workdir: str, identity: Optional[OidcIdentity]) -> LocalCloud:
    from galaxy_cloud_storage_testing import moto_aws

    port = localgalaxy.free_port()
    url = f"http://127.0.0.1:{port}"
    process = moto_aws.start(
        port, os.path.join(workdir, "moto.log"), workdir, web_identity_log=os.path.join(workdir, "web_identity.jsonl")
    )
    cloud = LocalCloud("aws", None, {}, {}, stoppers=[lambda: localgalaxy.stop(process)])  # type: ignore[arg-type]
    try:
        moto_aws.wait_until_up(url, process)
        cloud.admin = admin = moto_aws.make_admin(url)
        admin.create_bucket(BUCKET)
        admin.create_bucket(OTHER_BUCKET)
        if identity:
            role_arn = admin.create_web_identity_role("galaxy-lab-data", BUCKET, identity.issuer, identity.audience)
        else:
            key_id, secret = admin.create_bucket_user("galaxy-user", BUCKET)
    except BaseException:
        cloud.stop()
        raise
    if identity:
        cloud.settings = admin.plugin_settings()
        cloud.authz_config, cloud.mode = {"role_arn": role_arn}, "web_identity"
    else:
        cloud.settings = {**admin.plugin_settings(), "allow_stored_secrets": True}
        cloud.authz_config = {"access_key_id": key_id, "secret_access_key": secret}
        cloud.mode, cloud.secrets = "static_key", [secret]
    return cloud


def _start_azure(workdir: str, identity: Optional[OidcIdentity]) -> LocalCloud:
    """Azurite over HTTPS with --oauth basic (it checks a bearer token's audience, issuer and
    expiry), and a Microsoft identity platform of our own (entra_token_server.py) that issues those
    tokens: the plugin's authorization is an app's client secret, or (with ``identity``) the app's
    federated credential for that login, exchanged for a bearer token."""
    import json
    import uuid

    import requests

    from galaxy_cloud_storage_testing import azurite, entra_token_server
    from galaxy_cloud_storage_testing.local_ca import local_certificates
    from galaxy_cloud_storage_testing.storage_servers import wait_until

    certificates = local_certificates(os.path.join(workdir, "tls"))
    tenant, client_id, client_secret = str(uuid.uuid4()), str(uuid.uuid4()), uuid.uuid4().hex
    apps = os.path.join(workdir, "entra_apps.json")
    with open(apps, "w") as fh:
        app = {"tenant": tenant, "client_id": client_id, "client_secret": client_secret}
        if identity:
            app["federated_credentials"] = [
                {"issuer": identity.issuer, "subject": identity.subject, "audiences": [identity.audience]}
            ]
        json.dump({"apps": [app]}, fh)
    entra_port, azurite_port = localgalaxy.free_port(), localgalaxy.free_port()
    authority = f"https://127.0.0.1:{entra_port}"
    cloud = LocalCloud("azure", None, {}, {})  # type: ignore[arg-type]
    try:
        entra = entra_token_server.start(
            entra_port, apps, certificates.cert, certificates.key, os.path.join(workdir, "entra.log"), workdir,
            os.path.join(workdir, "entra_exchanges.jsonl"),
        )  # fmt: skip
        cloud.stoppers.append(lambda: localgalaxy.stop(entra))
        process = azurite.start(
            azurite_port, os.path.join(workdir, "azurite"), os.path.join(workdir, "azurite.log"), https=certificates
        )
        cloud.stoppers.append(lambda: localgalaxy.stop(process))
        discovery = f"{authority}/{tenant}/v2.0/.well-known/openid-configuration"
        wait_until(
            lambda: requests.get(discovery, timeout=2, verify=certificates.ca).ok, entra, "the Entra token server"
        )
        cloud.admin = admin = azurite.AzuriteAdmin(azurite_port, https=certificates, authority_host=authority)
        admin.wait(process)
        admin.create_bucket(BUCKET)
        admin.create_bucket(OTHER_BUCKET)
        sas = admin.container_sas(BUCKET)
    except BaseException:
        cloud.stop()
        raise
    cloud.settings = admin.plugin_settings()
    account = azurite.ACCOUNT
    if identity:  # secretless only, as an admin would run it
        cloud.settings["allow_stored_secrets"] = False
        cloud.authz_config, cloud.mode = (
            {"tenant_id": tenant, "client_id": client_id, "storage_account": account},
            "federated",
        )
    else:
        cloud.limited_authz_config = {"storage_account": account, "sas_token": sas}
        cloud.authz_config = {
            "tenant_id": tenant,
            "client_id": client_id,
            "storage_account": account,
            "client_secret": client_secret,
        }
        cloud.mode, cloud.secrets = "client_secret", [client_secret, sas]
    return cloud


GCP_POOL = "projects/123456789012/locations/global/workloadIdentityPools/galaxy"
GCP_AUDIENCE = f"//iam.googleapis.com/{GCP_POOL}/providers/galaxy-oidc"


def _start_gcp(workdir: str, identity: Optional[OidcIdentity]) -> LocalCloud:
    """fake-gcs-server behind gcs_auth_proxy.py (which admits only tokens that the local Google
    token endpoint issued, on the buckets granted to their principal), with google_sts_server.py
    as Google's token endpoints: the plugin's authorization is a service-account key, exchanged at
    the admin's token URL, or (with ``identity``) workload identity federation of that login; the
    token may use BUCKET only."""
    import json

    from galaxy_cloud_storage_testing import fake_gcs, gcs_auth_proxy, google_sts_server

    key, public_pem = service_account_key(fake_gcs.PROJECT, "galaxy-transfer")
    gcs_port, proxy_port, sts_port = (localgalaxy.free_port() for _ in range(3))
    direct_url, proxy_url = f"http://127.0.0.1:{gcs_port}", f"http://127.0.0.1:{proxy_port}"
    cloud = LocalCloud("gcp", None, {}, {})  # type: ignore[arg-type]
    try:
        # Download links carry -external-url: the proxy's, so that they go through it too.
        gcs = fake_gcs.start(gcs_port, os.path.join(workdir, "fake_gcs.log"), workdir, external_url=proxy_url)
        cloud.stoppers.append(lambda: localgalaxy.stop(gcs))
        sts_config = {
            "providers": [],
            "service_accounts": [
                {"email": key["client_email"], "bindings": [], "public_keys": {key["private_key_id"]: public_pem}}
            ],
        }
        grants = {f"serviceAccount:{key['client_email']}": {BUCKET: "write"}}
        if identity:
            sts_config["providers"] = [
                {"name": GCP_AUDIENCE, "issuer": identity.issuer, "allowed_audiences": [identity.audience]}
            ]
            grants = {f"principal://iam.googleapis.com/{GCP_POOL}/subject/{identity.subject}": {BUCKET: "write"}}
        sts, sts_url, _ = google_sts_server.start(sts_port, sts_config, workdir)
        cloud.stoppers.append(lambda: localgalaxy.stop(sts))
        fake_gcs.wait_until_up(direct_url, gcs)
        proxy, _ = gcs_auth_proxy.start(
            proxy_port, direct_url, sts_url, grants, os.path.join(workdir, "gcs_auth_proxy.log"), workdir
        )
        cloud.stoppers.append(lambda: localgalaxy.stop(proxy))
        cloud.admin = admin = fake_gcs.FakeGcsAdmin(direct_url, sts_url, storage_endpoint=proxy_url)
        admin.create_bucket(BUCKET)
        admin.create_bucket(OTHER_BUCKET)
    except BaseException:
        cloud.stop()
        raise
    cloud.settings = admin.plugin_settings()
    if identity:  # secretless only, as an admin would run it
        cloud.settings["allow_stored_secrets"] = False
        cloud.authz_config, cloud.mode = {"project": fake_gcs.PROJECT, "audience": GCP_AUDIENCE}, "workload_identity"
        return cloud
    cloud.authz_config = {"project": fake_gcs.PROJECT, "service_account_key": json.dumps(key)}
    # One line of the private key: what would show if the key leaked anywhere (even JSON-escaped).
    cloud.mode, cloud.secrets = "service_account_key", [key["private_key"].splitlines()[3]]
    return cloud


def service_account_key(project: str, name: str) -> tuple[dict, str]:
    """A new service-account key file (as Google's console makes one) and its public key (PEM)."""
    import uuid

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    key = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": uuid.uuid4().hex,
        "private_key": private_pem,
        "client_email": f"{name}@{project}.iam.gserviceaccount.com",
        "client_id": str(uuid.uuid4().int)[:21],
        "token_uri": "https://oauth2.googleapis.com/token",  # the plugin uses the admin's, never this
    }
    return key, public_pem


def _start_swift(
    workdir: str, identity: Optional[OidcIdentity] = None, keystone: bool = False, token_life: int = 86400
) -> LocalCloud:
    """An all-in-one Swift cluster with Swift's own v1 auth (tempauth): a user and key kept in
    Galaxy's vault; or, with ``keystone``, behind a real Keystone (keystone_aio.py): an application
    credential kept in the vault, or with ``identity`` too, Keystone OIDC federation of that login.
    ``token_life``: seconds tempauth's tokens live. The account's operator may use every container;
    a second user (no operator) only those shared with it."""
    from galaxy_cloud_storage_testing import swift_aio

    if keystone:
        from galaxy_cloud_storage_testing import keystone_aio

        cluster = keystone_aio.start(os.path.join(workdir, "keystone-swift"), identity=identity)
    else:
        cluster = swift_aio.start(os.path.join(workdir, "swift"), token_life=token_life)
    cloud = LocalCloud("openstack", cluster.admin(), {}, {}, stoppers=[cluster.stop])
    try:
        admin = cloud.admin
        for container in (BUCKET, f"{BUCKET}_segments", OTHER_BUCKET):
            admin.create_bucket(container)
        admin.share(BUCKET)
        admin.share(f"{BUCKET}_segments")  # a large object's segments are read with it
    except BaseException:
        cloud.stop()
        raise
    cloud.settings = admin.plugin_settings()
    if keystone and identity:
        cloud.authz_config = {
            "identity_provider": keystone_aio.IDP,
            "protocol": keystone_aio.PROTOCOL,
            "project_name": "galaxy",
        }
        cloud.mode = "oidc_federation"
        cloud.validations_path = cluster.validations_path
        return cloud
    if keystone:
        cloud.authz_config, cloud.limited_authz_config = (
            cluster.application_credential("alice"),
            cluster.application_credential("rita"),
        )
        cloud.mode = "application_credential"
        cloud.secrets = [
            config["application_credential_secret"] for config in (cloud.authz_config, cloud.limited_authz_config)
        ]
        return cloud
    cloud.authz_config = {"swift_user": swift_aio.ADMIN_USER, "swift_key": swift_aio.ADMIN_KEY}
    cloud.limited_authz_config = {"swift_user": swift_aio.READER_USER, "swift_key": swift_aio.READER_KEY}
    cloud.mode, cloud.secrets = "swift_v1", [swift_aio.ADMIN_KEY, swift_aio.READER_KEY]
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

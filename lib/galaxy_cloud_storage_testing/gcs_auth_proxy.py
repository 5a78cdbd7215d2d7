"""Cloud Storage's IAM front, on 127.0.0.1, in front of fake-gcs-server (which checks nothing).

Every request is authenticated and authorized as Google Cloud Storage does it, then passed to
fake-gcs-server unchanged (bodies streamed both ways, a piece at a time: any object size goes
through in bounded memory). Standard library only.

Authentication: ``Authorization: Bearer <token>``; the token is looked up at the token server
(``GET {token_server}/v1/tokeninfo?access_token=``, galaxy_cloud_storage_testing/google_sts_server.py); its ``sub`` is
the principal (``serviceAccount:EMAIL`` or ``principal://iam.googleapis.com/.../subject/SUB``).
Answers are cached for ``cache_seconds``, never past the token's ``exp``.

Authorization, the rules (GCS's, for IAM grants of the object roles on single buckets):

1. No or malformed Authorization -> 401 (``required``); a token the token server does not know
   or that has expired -> 401 ``Invalid Credentials`` (``authError``). Authentication comes first:
   a bad token never learns whether a bucket exists.
2. The principal's grant on the bucket named in the path allows the operation -> passed through
   (a missing object, or a bucket granted but absent, is then fake-gcs-server's own 404).
   Grants: ``read`` = roles/storage.objectViewer (objects.get, objects.list); ``write`` =
   roles/storage.objectAdmin (also objects.create, update, delete). Neither role holds a
   storage.buckets.* permission: bucket metadata (GET /b/B, IAM, ACLs) is refused, as real GCS
   refuses it to an objectAdmin; project-level calls (list or create buckets) are always refused.
   Copy and rewrite need read on the source bucket and write on the destination.
3. Not allowed: 404 ``The specified bucket does not exist.`` if the bucket does not exist (GCS
   answers 404 for a missing bucket to any authenticated caller: bucket names are one global,
   public namespace), else 403 ``... does not have storage.objects.X access ...``.
4. A resumable upload's session URL (``/upload/...`` with ``upload_id``) needs no token: on GCS the
   session URL is itself the credential, so an upload outlives the token that began it. The
   session was created by a request that passed rule 2.
5. ``/batch/`` is refused (403): its sub-requests would need parsing to be authorized.

Paths: JSON API ``/storage/v1/b/{bucket}/...``, media upload ``/upload/storage/v1/b/{bucket}/o``,
media download ``/download/storage/v1/b/{bucket}/o/{object}``; anything else is taken as the XML
API's ``/{bucket}/{object}`` (errors there are XML). google-cloud-storage downloads through the
object's ``mediaLink``, which fake-gcs-server builds from its ``-external-url``, and puts session URLs
at the Host it was asked at: so fake-gcs-server is started with ``-external-url`` = this proxy's URL
(``fake_gcs.command(port, external_url=...)``) and the client's Host header is passed unchanged.
The Authorization header is not passed on: the storage server has no use for it.

Config (``--config FILE``, JSON), plus any number of ``--allow PRINCIPAL=BUCKET:ROLE``::

    {"grants": {"serviceAccount:transfer@proj.iam.gserviceaccount.com": {"user-bucket": "write"},
                "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/galaxy/*":
                    {"shared-bucket": "read"}}}

Harness (the admin keeps fake-gcs-server's direct URL, unaffected by the proxy)::

    gcs_port, proxy_port = free_port(), free_port()
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    gcs = fake_gcs.start(gcs_port, log, cwd, external_url=proxy_url)   # then fake_gcs.wait_until_up
    proxy, proxy_url = gcs_auth_proxy.start(proxy_port, direct_url, token_server_url,
                                            {PRINCIPAL: {BUCKET: "write"}}, log, cwd)
    admin = fake_gcs.FakeGcsAdmin(direct_url, token_server_url, storage_endpoint=proxy_url)

Logs: one line per request (method, path without query, status, principal); never a token, and no
query string (a session URL's ``upload_id`` lets anyone holding it write).
"""

import argparse
import hashlib
import http.client
import json
import re
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from galaxy_cloud_storage_testing import serve_until_interrupted

HEALTH_PATH = "/_proxy/healthz"  # "_proxy" cannot be a bucket name: no clash with the XML API
PIECE = 1024 * 1024  # bytes relayed at a time, each way
UPSTREAM_TIMEOUT = 300  # seconds without a byte from fake-gcs-server
TOKENINFO_TIMEOUT = 10
CACHE_SECONDS = 30.0
CACHE_MAX = 4096  # tokens remembered at most (a flood of bogus tokens cannot grow memory)
MAX_LINE = 65536
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
}

ROLES = {
    "read": frozenset({"storage.objects.get", "storage.objects.list"}),
    "write": frozenset(
        {
            "storage.objects.get",
            "storage.objects.list",
            "storage.objects.create",
            "storage.objects.update",
            "storage.objects.delete",
        }
    ),
}

JSON_API = re.compile(r"^/(?:(upload|download)/)?storage/v1/b(?:/([^/]+)(/.*)?)?$")
COPY = re.compile(r"^/o/[^/]+/(?:copyTo|rewriteTo)/b/([^/]+)/o/[^/]+$")


@dataclass(frozen=True)
class Need:
    """A permission the request needs; bucket None: on the project."""

    bucket: str | None
    permission: str

    @property
    def resource(self) -> str:
        if self.bucket is None:
            return "Google Cloud project"
        if self.permission.startswith("storage.objects.") and self.permission != "storage.objects.list":
            return "Google Cloud Storage object"
        return "Google Cloud Storage bucket"


@dataclass(frozen=True)
class Route:
    needs: tuple[Need, ...]
    xml: bool = False  # the XML API answers errors in XML
    session: bool = False  # a resumable upload session URL: the URL is the credential (rule 4)
    refusal: str | None = None  # refused whoever asks (rule 5)


def route(method: str, path: str, query: str) -> Route:
    """What a request needs, from its method and (still percent-encoded) path."""
    reading = method in ("GET", "HEAD")
    match = JSON_API.match(path)
    if path.startswith("/batch/"):
        return Route((), refusal="Batch requests are not supported by this endpoint; send each request on its own.")
    if match is None:  # XML API: /{bucket}/{object...}, or / for the project's buckets
        bucket, _, key = path.lstrip("/").partition("/")
        if not bucket:
            return Route((Need(None, "storage.buckets.list"),), xml=True)
        verb = ("get" if key else "list") if reading else ("delete" if method == "DELETE" else "create")
        return Route((Need(unquote(bucket), f"storage.objects.{verb}"),), xml=True)
    media, bucket, rest = match.groups()
    if bucket is None:
        return Route((Need(None, "storage.buckets.list" if reading else "storage.buckets.create"),))
    bucket = unquote(bucket)
    if media == "upload":
        return Route((Need(bucket, "storage.objects.create"),), session="upload_id" in parse_qs(query))
    if media == "download":
        return Route((Need(bucket, "storage.objects.get"),))
    if rest is None or not (rest == "/o" or rest.startswith("/o/")):  # the bucket's own metadata, IAM, ACLs...
        verb = "get" if reading else ("delete" if method == "DELETE" and rest is None else "update")
        return Route((Need(bucket, f"storage.buckets.{verb}"),))
    copy = COPY.match(rest)
    if copy:
        return Route((Need(bucket, "storage.objects.get"), Need(unquote(copy.group(1)), "storage.objects.create")))
    if rest == "/o":
        return Route((Need(bucket, "storage.objects.list" if reading else "storage.objects.create"),))
    if reading:
        return Route((Need(bucket, "storage.objects.get"),))
    if method == "DELETE":
        return Route((Need(bucket, "storage.objects.delete"),))
    return Route((Need(bucket, "storage.objects.create" if rest.endswith("/compose") else "storage.objects.update"),))


class Policy:
    """IAM grants: principal (or ``principalSet://.../*``) -> {bucket: role}."""

    def __init__(self, grants: dict[str, dict[str, str]]):
        for principal, buckets in grants.items():
            for bucket, role in buckets.items():
                if role not in ROLES:
                    raise ValueError(f"Unknown role {role!r} for {principal} on {bucket}: use one of {sorted(ROLES)}")
        self.grants = grants

    def allows(self, principal: str, need: Need) -> bool:
        if need.bucket is None:
            return False  # no grant here is on the project
        return any(
            need.permission in ROLES[buckets[need.bucket]]
            for member, buckets in self.grants.items()
            if need.bucket in buckets and _is_member(principal, member)
        )


def _is_member(principal: str, member: str) -> bool:
    if member.startswith("principalSet://") and member.endswith("/*"):  # every subject of a pool
        return principal.startswith("principal://" + member[len("principalSet://") : -1] + "subject/")
    return principal == member


def parse_allow(value: str) -> tuple[str, str, str]:
    """``PRINCIPAL=BUCKET[:ROLE]`` (role: write) -> (principal, bucket, role). Bucket names hold
    neither '=' nor ':'; principals may hold ':'."""
    principal, sep, grant = value.rpartition("=")
    bucket, _, role = grant.partition(":")
    if not sep or not principal or not bucket:
        raise argparse.ArgumentTypeError(f"expected PRINCIPAL=BUCKET[:ROLE], got {value!r}")
    return principal, bucket, role or "write"


class ClientGone(Exception):
    """The client stopped sending its request body (not an OSError: those are the upstream's)."""


class TokenServerError(Exception):
    """The token server could not say whether a token is valid."""


class TokenInfo:
    """Token -> principal, from the token server's tokeninfo; None for unknown or expired tokens.
    Cached under the token's SHA-256 (the token itself is not kept)."""

    def __init__(self, token_server_url: str, cache_seconds: float = CACHE_SECONDS):
        self.url = urlsplit(token_server_url.rstrip("/"))
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def principal(self, token: str) -> str | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.time()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        principal, expiry = self._ask(token)
        until = now + self.cache_seconds
        if expiry is not None:
            until = min(until, expiry)  # never valid past its expiry, whatever the cache says
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
                if len(self._cache) >= CACHE_MAX:
                    self._cache.clear()
            self._cache[key] = (principal, until)
        return principal

    def _ask(self, token: str) -> tuple[str | None, float | None]:
        # http.client, not urllib: urllib would follow http_proxy/https_proxy from the environment.
        if self.url.scheme == "https":
            connection = http.client.HTTPSConnection(
                self.url.netloc, timeout=TOKENINFO_TIMEOUT, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(self.url.netloc, timeout=TOKENINFO_TIMEOUT)
        try:
            connection.request("GET", f"{self.url.path}/v1/tokeninfo?{urlencode({'access_token': token})}")
            response = connection.getresponse()
            body = response.read()
        except OSError as e:
            raise TokenServerError(f"token server unreachable ({type(e).__name__})") from e
        finally:
            connection.close()
        if response.status in (400, 401):  # Google's tokeninfo: 400 invalid_token
            return None, None
        if response.status != 200:
            raise TokenServerError(f"token server answered HTTP {response.status}")
        try:
            info = json.loads(body)
            return info.get("sub") or None, float(info["exp"]) if info.get("exp") is not None else None
        except (ValueError, TypeError) as e:
            raise TokenServerError("token server answered something that is not tokeninfo") from e


@dataclass(frozen=True)
class GcsError:
    status: int
    reason: str  # JSON API errors[].reason
    message: str
    xml_code: str  # XML API <Code>

    def json_body(self) -> bytes:
        item = {"message": self.message, "domain": "global", "reason": self.reason}
        if self.status == 401:
            item.update(locationType="header", location="Authorization")
        return json.dumps({"error": {"code": self.status, "message": self.message, "errors": [item]}}).encode()

    def xml_body(self) -> bytes:
        message = self.message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return (
            "<?xml version='1.0' encoding='UTF-8'?>"
            f"<Error><Code>{self.xml_code}</Code><Message>{message}</Message></Error>"
        ).encode()


def denied(who: str, need: Need, status: int = 403) -> GcsError:
    message = (
        f"{who} does not have {need.permission} access to the {need.resource}. "
        f"Permission '{need.permission}' denied on resource (or it may not exist)."
    )
    if status == 401:
        return GcsError(401, "required", message, "AuthenticationRequired")
    return GcsError(403, "forbidden", message, "AccessDenied")


INVALID_CREDENTIALS = GcsError(401, "authError", "Invalid Credentials", "InvalidAuthenticationInfo")
NO_SUCH_BUCKET = GcsError(404, "notFound", "The specified bucket does not exist.", "NoSuchBucket")


class AuthProxy:
    def __init__(self, upstream_url: str, tokens: TokenInfo, policy: Policy):
        upstream = urlsplit(upstream_url)
        if upstream.scheme != "http":
            raise ValueError("the upstream is fake-gcs-server over plain HTTP on loopback")
        self.upstream_netloc = upstream.netloc
        self.tokens = tokens
        self.policy = policy

    def upstream(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.upstream_netloc, timeout=UPSTREAM_TIMEOUT)

    def authorize(self, where: Route, authorization: str | None) -> tuple[GcsError | None, str | None]:
        """(refusal or None, principal) for one request, by the rules in the module's docstring."""
        if where.session:
            return None, None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return (denied("Anonymous caller", where.needs[0], 401) if where.needs else INVALID_CREDENTIALS), None
        principal = self.tokens.principal(token.strip())
        if principal is None:
            return INVALID_CREDENTIALS, None
        if where.refusal:
            return GcsError(403, "forbidden", where.refusal, "AccessDenied"), principal
        who = principal.split(":", 1)[1] if principal.startswith(("serviceAccount:", "user:")) else principal
        for need in where.needs:
            if not self.policy.allows(principal, need):
                if need.bucket is not None and not self.bucket_exists(need.bucket):
                    return NO_SUCH_BUCKET, principal
                return denied(who, need), principal
        return None, principal

    def bucket_exists(self, bucket: str) -> bool:
        """Asked of fake-gcs-server itself; anything but its 404 counts as existing (never claim
        "missing" without knowing)."""
        connection = self.upstream()
        try:
            connection.request("GET", f"/storage/v1/b/{quote(bucket, safe='')}?fields=name")
            response = connection.getresponse()
            response.read()
            return response.status != 404
        except OSError:
            return True
        finally:
            connection.close()


class Handler(BaseHTTPRequestHandler):
    server_version = "gcs-auth-proxy/1"
    protocol_version = "HTTP/1.1"
    proxy: AuthProxy  # set on a subclass by serve()
    principal: str | None = None

    def do_GET(self):
        self.handle_any()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def handle_any(self) -> None:
        self.principal = None
        url = urlsplit(self.path)
        where = route(self.command, url.path, url.query)
        try:
            refusal, self.principal = (
                (None, None)
                if url.path == HEALTH_PATH
                else self.proxy.authorize(where, self.headers.get("Authorization"))
            )
        except TokenServerError as e:
            self.log_message("token check failed: %s", e)
            refusal = GcsError(503, "backendError", "The service is currently unavailable.", "ServiceUnavailable")
        try:
            if url.path == HEALTH_PATH:
                self.discard_body()
                return self.reply(200, b'{"status": "ok"}', "application/json")
            if refusal is not None:
                # Read what the client sends before answering, so that it reads the answer (a
                # client still writing a large body to a closed socket sees only a reset).
                self.discard_body()
                if where.xml:
                    return self.reply(
                        refusal.status, refusal.xml_body(), "application/xml; charset=UTF-8", refusal.status == 401
                    )
                return self.reply(
                    refusal.status, refusal.json_body(), "application/json; charset=UTF-8", refusal.status == 401
                )
            self.forward()
        except (ValueError, ClientGone) as e:  # a malformed or abandoned request body
            self.log_message("request body: %s", type(e).__name__)
            self.close_connection = True

    # -- bodies -----------------------------------------------------------------------------------

    def copy_body(self, write) -> None:
        """Relay the request body to ``write`` a piece at a time: Content-Length bytes, or the
        chunked encoding as it is (the upstream decodes it)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(MAX_LINE)
                write(line)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while line not in (b"\r\n", b"\n", b""):  # trailers, then the blank line
                        line = self.rfile.readline(MAX_LINE)
                        write(line)
                    return
                self.copy_exactly(size + 2, write)  # the data and its CRLF
        self.copy_exactly(int(self.headers.get("Content-Length") or 0), write)

    def copy_exactly(self, remaining: int, write) -> None:
        if remaining < 0:
            raise ValueError("negative Content-Length")
        while remaining:
            try:
                piece = self.rfile.read(min(remaining, PIECE))
            except OSError as e:
                raise ClientGone(type(e).__name__) from e
            if not piece:
                raise ClientGone("the client closed the connection before the end of its body")
            write(piece)
            remaining -= len(piece)

    def discard_body(self) -> None:
        self.copy_body(lambda piece: None)

    # -- answers ----------------------------------------------------------------------------------

    def reply(self, status: int, body: bytes, content_type: str, challenge: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if challenge:
            self.send_header("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/"')
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def forward(self) -> None:
        connection = self.proxy.upstream()
        try:
            try:
                connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    # Host passes as the client sent it: fake-gcs-server writes session URLs to it.
                    if name.lower() not in HOP_BY_HOP and name.lower() != "authorization":
                        connection.putheader(name, value)
                if "Host" not in self.headers:
                    connection.putheader("Host", "{}:{}".format(*self.server.server_address[:2]))
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    connection.putheader("Transfer-Encoding", "chunked")
                connection.endheaders()
                self.copy_body(connection.send)
                response = connection.getresponse()
            except OSError as e:
                self.log_message("upstream: %s", type(e).__name__)
                self.close_connection = True  # what is left of the request body cannot be trusted
                return self.reply(
                    502,
                    GcsError(502, "backendError", "Bad Gateway", "InternalError").json_body(),
                    "application/json; charset=UTF-8",
                )
            self.relay(response)
        finally:
            connection.close()

    def relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        self.log_request(response.status)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        bodyless = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        chunked = not bodyless and response.getheader("Content-Length") is None
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if bodyless:
            return
        try:
            while piece := response.read(PIECE):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException) as e:
            # Headers are gone: cutting the connection is the only way to tell the client.
            self.log_message("relaying the answer: %s", type(e).__name__)
            self.close_connection = True

    # -- log: never a token, never a query string --------------------------------------------------

    def log_request(self, code="-", size="-"):
        status = getattr(code, "value", code)
        who = f" principal={self.principal}" if self.principal else ""
        self.log_message("%s %s %s%s", self.command, urlsplit(self.path).path, status, who)

    def log_message(self, format, *args):
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def serve(
    upstream_url: str,
    token_server_url: str,
    grants: dict,
    host: str = "127.0.0.1",
    port: int = 0,
    cache_seconds: float = CACHE_SECONDS,
) -> ThreadingHTTPServer:
    """The proxy as a server (not yet serving: call ``serve_forever``)."""
    proxy = AuthProxy(upstream_url, TokenInfo(token_server_url, cache_seconds), Policy(grants))
    server = ThreadingHTTPServer((host, port), type("BoundHandler", (Handler,), {"proxy": proxy}))
    server.daemon_threads = True
    return server


# -- for harnesses: the proxy as a subprocess ----------------------------------------------------------


def command(
    port: int, upstream_url: str, token_server_url: str, config_path: str, python: str = sys.executable
) -> list[str]:
    return [
        python,
        "-m",
        __spec__.name,
        "--port",
        str(port),
        "--upstream",
        upstream_url,
        "--token-server",
        token_server_url,
        "--config",
        config_path,
    ]


def wait_until_up(url: str, process, timeout: float = 30) -> float:
    import requests

    from galaxy_cloud_storage_testing.storage_servers import wait_until

    return wait_until(lambda: requests.get(f"{url}{HEALTH_PATH}", timeout=2).ok, process, "gcs_auth_proxy", timeout)


def start(port: int, upstream_url: str, token_server_url: str, grants: dict, log_path: str, cwd: str, **start_kwargs):
    """The proxy on 127.0.0.1:``port`` (localgalaxy.start: a session of its own, output in
    ``log_path``), ready; grants go to ``cwd``/gcs_auth_proxy.json. Returns (process, url)."""
    import os

    from galaxy_cloud_storage_testing import (
        localgalaxy,  # imports galaxy.tools (about 10 s): only where Galaxy is started anyway
    )

    Policy(grants)  # a bad role fails here, not in the subprocess
    config_path = os.path.join(cwd, "gcs_auth_proxy.json")
    with open(config_path, "w") as fh:
        json.dump({"grants": grants}, fh)
    process = localgalaxy.start(
        command(port, upstream_url, token_server_url, config_path), log_path, cwd, **start_kwargs
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
    except BaseException:
        localgalaxy.stop(process)
        raise
    return process, url


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", required=True, help="fake-gcs-server's own URL, e.g. http://127.0.0.1:4443")
    parser.add_argument("--token-server", required=True, help="google_sts_server.py's URL (its /v1/tokeninfo)")
    parser.add_argument("--config", help='JSON file: {"grants": {PRINCIPAL: {BUCKET: "read"|"write"}}}')
    parser.add_argument(
        "--allow",
        action="append",
        type=parse_allow,
        default=[],
        metavar="PRINCIPAL=BUCKET[:ROLE]",
        help="one more grant (role: read or write, default write)",
    )
    parser.add_argument(
        "--cache-seconds",
        type=float,
        default=CACHE_SECONDS,
        help="how long a tokeninfo answer is reused (never past the token's expiry)",
    )
    args = parser.parse_args(argv)
    grants: dict = {}
    if args.config:
        with open(args.config) as fh:
            grants = json.load(fh).get("grants", {})
    for principal, bucket, role in args.allow:
        grants.setdefault(principal, {})[bucket] = role
    try:
        server = serve(args.upstream, args.token_server, grants, args.host, args.port, args.cache_seconds)
    except ValueError as e:
        parser.error(str(e))
    serve_until_interrupted(server, f"gcs_auth_proxy listening on http://{args.host}:{server.server_address[1]}")


if __name__ == "__main__":
    main()

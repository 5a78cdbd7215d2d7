"""An HTTP/1.1 relay on 127.0.0.1 in front of a local storage emulator, which makes chosen requests fail.

The emulators (moto, Azurite, fake-gcs-server, Swift's proxy) never throttle, drop a connection in the
middle of a body, hang, or flip a bit; the clouds do all of these now and then, and the plugin's retries,
timeouts and checksums exist for them. Put between the client and the emulator, this relay makes them
happen on demand, to the requests a test picks, while the emulator keeps its state for the test to ask.
A relay of bytes alone could only kill every connection at once (the plain TCP relay this one
replaced); this one parses HTTP on both sides (h11) so it knows where each request and response
starts and ends on a keep-alive connection, and can fail one of them.

    proxy = FaultProxy(moto_port)
    proxy.add(Status(503, body=s3_error("SlowDown"), content_type="application/xml", every=2))
    s3 = boto3.client("s3", endpoint_url=proxy.url, ...)
    ...
    assert sum(isinstance(r.fault, Status) for r in proxy.requests) == 3

Faults are checked in the order they were added, each with its matcher (``method``, ``path`` regex
searched in the target with its query, ``every`` k-th match, at most ``times`` injections). The first
one that takes the request acts on it, and that ends the check, but for a Callback: it is called (before
anything else happens to the request) and the check goes on. Status answers in the server's place;
ResetMidBody, Stall and Corrupt act on a request that goes to the server.

How: one thread per client connection reads its requests one after another and relays each response;
a request's body is pumped to the server by a second thread meanwhile (a server may answer before it has
read the body, or only once it has sent ``100 Continue``). Each client connection gets its own server
connection, opened when its first request arrives and again after the server closed it. h11 parses and
writes the heads and the bodies of unknown length; a body of known length (Content-Length: all objects)
goes raw, in pieces of at most 1 MiB (CHUNK), since h11 would copy each piece twice more, under the GIL:
that made the relay 6-7 times slower than a direct transfer. Memory stays bounded whatever the size.

HTTPS: ``FaultProxy(port, tls=local_ca.local_certificates(directory))`` is an HTTPS server to its
clients, with ``tls.cert``, and an HTTPS client to the target, which must have a certificate that
``tls.ca`` vouches for, for the name ``host``; ``url`` is then https://. It relays (and faults) the plain
HTTP in between, as above. What differs: a reset reaches a Python client as its ssl module reads it, as
an end of the connection without close_notify, which http.client and urllib3 report as a body cut short
(IncompleteRead), not as a reset; the relay speaks TLS 1.2 to the target (see __init__); and ssl reads
one TLS record (16 KiB at most) at a time, so a raw body's pieces are what has arrived (_receive_tls).

Limits: no CONNECT or Upgrade. The relay speaks HTTP/1.1 to both sides, as h11 writes it: bodies and
headers (names' case included) pass unchanged, but a response without a length (close-delimited) reaches
an HTTP/1.1 client chunked, and a chunked body's chunks get the relay's sizes. A cut() while the relay is
blocked sending to a client that does not read may reach that client as the end of the connection (FIN)
just before the reset, i.e. as a body cut short.

Throughput (bench: 256 MiB GET from an http.server that writes 1 MiB pieces, read by ``requests`` in
1 MiB pieces; server, relay and client in one process, as the unit tests run them, so sharing the GIL
and the machine's 2 cores; best of 3, repeated 10 times): direct 0.07-0.10 s (2.5-3.5 GiB/s), through
the relay 0.15-0.20 s (1.3-1.7 GiB/s), 1.3 to 2.4 times as long, 1.8 typically. The same with the
server in a process of its own (as the emulators are): 1.7 to 2.7 times. For comparison, with the
bodies through h11: 0.5-0.6 s, 6-7 times; a plain TCP relay (64 KiB recv): 0.27-0.30 s, 3 times.
Over HTTPS (the same, the server wrapped in ssl; TLS 1.3 direct, 1.2 from the relay; AES-256-GCM), where
the relay decrypts and encrypts again: direct 0.45-0.55 s, through the relay 1.0-1.2 s, 2.0 to 2.4 times
(1.2-1.4 s, a fifth more, with one record per piece).
"""

import contextlib
import fcntl
import re
import select
import socket
import ssl
import struct
import termios
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable, Iterable, Iterator, Literal, Optional, TYPE_CHECKING, Union
from xml.sax.saxutils import escape

import h11

if TYPE_CHECKING:
    from galaxy_cloud_storage_testing.local_ca import LocalCertificates

CHUNK = 1024 * 1024  # a raw body's pieces: large, so that the per-piece Python cost is small next to the copying
HEAD_READ = 64 * 1024  # what h11 is given at a time: heads, and bodies of unknown length
RESET = struct.pack("ii", 1, 0)  # SO_LINGER on with 0 s: close() then sends RST instead of FIN
LINGER_IDLE, LINGER_LIMIT = 1.0, 10.0  # reading what a client still sends after it was answered early


@dataclass(eq=False, kw_only=True)
class Fault:
    """Which requests get the fault. eq=False: faults compare by identity, so a test can tell its
    faults apart in ``proxy.requests``. ``matched`` and ``injected`` are the proxy's counts."""

    method: Optional[str] = None  # "GET", ...; None: any
    path: Optional[str] = None  # a regex searched in the request target, query string included
    every: int = 1  # the every-th, 2*every-th ... matching request gets it
    times: Optional[int] = None  # at most this many injections; None: no limit
    matched: int = field(default=0, init=False)
    injected: int = field(default=0, init=False)

    def __post_init__(self):
        if self.every < 1:
            raise ValueError(f"every must be at least 1, not {self.every}")
        self._path = re.compile(self.path) if self.path is not None else None

    def _takes(self, method: str, target: str) -> bool:
        """Whether this request gets the fault, counting it if so (called under the proxy's lock)."""
        if self.method is not None and method != self.method.upper():
            return False
        if self._path is not None and not self._path.search(target):
            return False
        if self.times is not None and self.injected >= self.times:
            return False
        self.matched += 1
        if self.matched % self.every:
            return False
        self.injected += 1
        return True


@dataclass(eq=False)
class Status(Fault):
    """Answer in the server's place (the request never reaches it), with ``Connection: close``. No
    ``Retry-After`` unless given in ``headers``: the clients must back off by themselves. The answer does
    not wait for the request's body, so a client that sent ``Expect: 100-continue`` gets it at once."""

    status: int = 503
    body: Union[bytes, str, None] = None  # None: a line of plain text naming the status
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        super().__post_init__()
        if not 200 <= self.status <= 599:
            raise ValueError(f"an injected answer needs a final status (200-599), not {self.status}")

    def payload(self) -> bytes:
        if self.body is None:
            try:
                reason = HTTPStatus(self.status).phrase
            except ValueError:
                reason = ""  # a status http.HTTPStatus does not name
            return f"{self.status} {reason} (injected by FaultProxy)\n".encode()
        return self.body.encode() if isinstance(self.body, str) else self.body


@dataclass(eq=False)
class ResetMidBody(Fault):
    """Relay the head and the first ``after_bytes`` bytes of the response's (or the request's) body,
    then reset both connections. The bytes are delivered before the reset (the relay waits for its send
    queue to empty), so a client that resumes can be checked to resume from exactly there. A body not
    longer than ``after_bytes`` goes whole, without its end (a chunked body's last chunk), then the reset."""

    after_bytes: int = 0
    direction: Literal["response", "request"] = "response"

    def __post_init__(self):
        super().__post_init__()
        if self.direction not in ("response", "request"):
            raise ValueError(f"direction is 'response' or 'request', not {self.direction!r}")


@dataclass(eq=False)
class Stall(Fault):
    """The server's answer is held ``seconds`` (meant to be longer than the client's read timeout)
    before any of it is relayed, or after ``after_bytes`` of its body; then the connections are closed
    without relaying the rest: the client has given up by then. Interim answers (100 Continue) pass."""

    seconds: float = 30.0
    after_bytes: Optional[int] = None


@dataclass(eq=False)
class Corrupt(Fault):
    """One byte of the response's body, at ``offset``, is flipped (XOR 0xFF); lengths and headers stay as
    they are, so only a checksum can tell. A body not longer than ``offset`` passes unchanged."""

    offset: int = 0


@dataclass(eq=False)
class Callback(Fault):
    """``fn(method, target, headers)`` is called in the relay's thread before the request goes to the
    server (headers: (name, value) strings as received), e.g. to change the object between a HEAD and a
    GET; then the request goes on unchanged, or meets the next fault that takes it. An exception in ``fn``
    closes the client's connection and surfaces through threading.excepthook (pytest reports it)."""

    fn: Callable[[str, str, list[tuple[str, str]]], None]


def s3_error(code: str = "SlowDown", message: str = "Please reduce your request rate.") -> bytes:
    """An S3 error document, for Status(body=..., content_type="application/xml")."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        "<RequestId>fault-proxy</RequestId></Error>"
    ).encode()


@dataclass
class Exchange:
    """A request as the relay saw it: arrival order is list order in ``FaultProxy.requests``."""

    method: str
    target: str
    fault: Optional[Fault]  # the fault that acted on the request, else the last Callback called for it, else None
    status: Optional[int] = None  # the final status the client was sent (the server's or injected); None: none


class _Hangup(Exception):
    """The exchange ended the connection on purpose (a fault); nothing to relay any more."""


class FaultProxy:
    """The relay, listening at ``url`` until cut() or close(); a context manager. add() faults, clear()
    them; ``requests``: what it saw, in order (a copy). With ``tls``, HTTPS on both sides (``url`` is
    https://...): it shows clients ``tls.cert`` and checks the target's certificate against ``tls.ca``,
    for the name ``host``."""

    def __init__(self, target_port: int, host: str = "127.0.0.1", tls: Optional["LocalCertificates"] = None):
        self.target = (host, target_port)
        self.tls = tls
        self._server_tls: Optional[ssl.SSLContext] = None  # the relay as a server, to its clients
        self._client_tls: Optional[ssl.SSLContext] = None  # and as a client, to the target
        if tls is not None:
            self._server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._server_tls.load_cert_chain(tls.cert, tls.key)
            self._client_tls = ssl.create_default_context(cafile=tls.ca)
            # Two threads use a connection at once, one reading, the other writing (a request's body goes
            # up while the answer is awaited), which OpenSSL does not promise to handle; it does for the
            # application's data, not for a handshake message, which TLS 1.3 servers send after the
            # handshake (session tickets): the first read would process them while the body is being sent.
            # TLS 1.2 has none. (The relay's own clients send none after the handshake, and the relay sends
            # its tickets to them before do_handshake() returns.)
            self._client_tls.maximum_version = ssl.TLSVersion.TLSv1_2
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"{'https' if tls is not None else 'http'}://{host}:{self.port}"
        self._faults: list[Fault] = []
        self._exchanges: list[Exchange] = []
        self._sockets: set[socket.socket] = set()  # every open socket, both sides, for cut()
        self._lock = threading.Lock()
        self._cut_off = threading.Event()  # also what a stall waits on, so cut() ends stalls at once
        threading.Thread(target=self._accept, daemon=True).start()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove all faults: a plain relay from now on (``requests`` keeps what it saw)."""
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    def cut(self) -> None:
        """The server is gone for good: new connections are refused, open ones reset (SO_LINGER 0).
        shutdown() is what wakes the relay's threads blocked on them (close() alone would not)."""
        with self._lock:
            self._cut_off.set()
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            self.listener.close()
            sockets = list(self._sockets)
        for sock in sockets:
            _drop(sock, reset=True)

    close = cut

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # cut
            if self._register(client):
                threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self._server_tls is not None:
            try:
                client = self._secure(client, self._server_tls, server_side=True)
            except OSError:
                return  # a failed handshake (the client does not trust tls.cert, say), or cut()
        _Connection(self, client).run()

    def _register(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._cut_off.is_set():
                _drop(sock, reset=True)
                return False
            self._sockets.add(sock)
            return True

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.target)
        if not self._register(sock):
            raise ConnectionRefusedError("the proxy was cut")
        if self._client_tls is not None:
            sock = self._secure(sock, self._client_tls, server_hostname=self.target[0])
        return sock

    def _secure(self, sock: socket.socket, context: ssl.SSLContext, **wrap) -> ssl.SSLSocket:
        """TLS on a registered socket, which it replaces in the register (wrapping takes over the socket's
        file descriptor): under the lock, so that cut() sees one or the other, and can wake the handshake."""
        with self._lock:
            self._sockets.discard(sock)
            if self._cut_off.is_set():
                _drop(sock, reset=True)
                raise ConnectionRefusedError("the proxy was cut")
            try:
                secure = context.wrap_socket(sock, do_handshake_on_connect=False, **wrap)
            except OSError:
                _drop(sock, reset=False)
                raise
            self._sockets.add(secure)
        try:
            secure.do_handshake()
        except OSError:
            _drop(secure, reset=False)
            self._forget(secure)
            raise
        return secure

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def _arrived(self, method: str, target: str) -> tuple[Exchange, list["Callback"]]:
        """The request's record, and the callbacks to call for it."""
        with self._lock:
            callbacks, acting = [], None
            for fault in self._faults:
                if fault._takes(method, target):
                    if not isinstance(fault, Callback):
                        acting = fault
                        break
                    callbacks.append(fault)
            self._exchanges.append(Exchange(method, target, acting or (callbacks[-1] if callbacks else None)))
            return self._exchanges[-1], callbacks


class _Peer:
    """A socket and h11's state of the exchange under way on it. h11 reads and writes the heads, and the
    bodies of unknown length (chunked, or until the connection closes); a body of known length goes raw,
    socket to socket, since h11's copying of it into and out of its buffer would cost the relay most of its
    speed. So h11 cannot follow the connection from one exchange to the next: each exchange gets a new h11
    state, handed what the last one had read past its end (a pipelined request). Two threads use one peer
    at a time (one receives, the other sends): the lock covers h11's bookkeeping only, never a blocking
    receive or send."""

    def __init__(self, sock: socket.socket, role):
        self.sock = sock
        self.role = role
        self.lock = threading.Lock()
        self.poller: Optional[select.poll] = None  # _receive_tls's
        self.new_exchange()

    def new_exchange(self, unread: bytes = b"") -> None:
        self.http = h11.Connection(self.role, max_incomplete_event_size=64 * 1024)
        if unread:  # (b"" would be the peer's EOF)
            self.http.receive_data(unread)
        self.end_of_message: Optional[h11.EndOfMessage] = None

    def next_event(self):
        while True:
            with self.lock:
                event = self.http.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = self.sock.recv(HEAD_READ)
            with self.lock:
                self.http.receive_data(data)  # b"" is the peer's EOF, which h11 takes as such

    def send(self, event) -> None:
        with self.lock:
            pieces = self.http.send_with_data_passthrough(event)
        for piece in pieces or ():
            self.sock.sendall(piece)

    def unread(self) -> bytes:
        """What h11 has received and not parsed: after a head, the start of the body (and maybe more)."""
        with self.lock:
            return self.http.trailing_data[0]

    def h11_body(self) -> Iterator[bytes]:
        while type(event := self.next_event()) is h11.Data:
            yield event.data
        self.end_of_message = event  # with the trailers, if any

    def raw_body(self, length: int) -> Iterator[Union[bytes, memoryview]]:
        """A body of known length, just after its head: what h11 read of it, then the rest from the socket,
        never reading past its end (that would be the next request)."""
        start = self.unread()[:length]
        if start:
            yield start
        left = length - len(start)
        buffer = bytearray(min(left, CHUNK))
        view = memoryview(buffer)
        receive = self._receive_tls if isinstance(self.sock, ssl.SSLSocket) else self.sock.recv_into
        while left:
            received = receive(buffer, min(left, CHUNK))
            if not received:
                raise ConnectionError(f"the peer closed the connection {left} bytes before the end of the body")
            yield view[:received]  # sent on before the next recv_into overwrites it
            left -= received

    def _receive_tls(self, buffer: bytearray, size: int) -> int:
        """recv_into() for TLS, which gives one record (16 KiB at most) at a time: and the next ones, as long
        as they have arrived, so that the pieces relayed are larger (a fifth less time for a large body)."""
        sock = self.sock
        received = sock.recv_into(buffer, size)
        if not received or received == size:
            return received
        view = memoryview(buffer)
        if self.poller is None:
            self.poller = select.poll()
            self.poller.register(sock, select.POLLIN)
        while received < size and (sock.pending() or self.poller.poll(0)):
            try:
                more = sock.recv_into(view[received:], size - received)
            except OSError:
                more = 0  # a reset, say: what came before it is relayed first
            if not more:
                break  # the end of the connection: the next call says so
            received += more
        return received

    def idle(self) -> bool:
        """Nothing to read: a server's connection that has this after an exchange is still open (it reads as
        readable once the server closed it, after its keep-alive timeout)."""
        if self.sock.fileno() == -1:
            return False  # closed by cut()
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return False  # decrypted, not yet read: poll() cannot see it
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return not poller.poll(0)


def _framing(message, request_method: bytes = b"") -> Union[int, Literal["chunked", "close"]]:
    """How a message's body ends, as HTTP/1.1 has it: after a known length (0: no body), with its last
    chunk, or when the server closes the connection. h11 has checked the headers (conflicting lengths,
    transfer codings other than chunked)."""
    if type(message) is h11.Response and (request_method == b"HEAD" or message.status_code in (204, 304)):
        return 0
    headers = dict(message.headers)  # names lowercased by h11
    if b"transfer-encoding" in headers:
        return "chunked"
    if b"content-length" in headers:
        return int(headers[b"content-length"])
    return 0 if type(message) is h11.Request else "close"


def _says_close(message) -> bool:
    """``Connection: close``: the connection ends with this exchange."""
    connection = b",".join(value for name, value in message.headers if name == b"connection").lower()
    return b"close" in [token.strip() for token in connection.split(b",")]


class _Connection:
    """One client connection and the server connection that goes with it, exchange after exchange."""

    def __init__(self, proxy: FaultProxy, client: socket.socket):
        self.proxy = proxy
        self.client = _Peer(client, h11.SERVER)  # the relay is the server to the client...
        self.server: Optional[_Peer] = None  # ...and the client to the server
        self.server_reusable = False  # the last exchange left the server's connection ready for another
        self.request_read = False  # the request's body has been relayed whole

    def run(self) -> None:
        try:
            unread = b""
            while (unread := self._exchange(unread)) is not None:
                pass
        except ssl.SSLCertVerificationError:
            raise  # tls.ca does not vouch for the target: a mistake to report (threading.excepthook)
        except (OSError, h11.ProtocolError, _Hangup):
            pass  # either side gone, or a fault ended it: the sockets are closed below either way
        finally:
            self._close(reset=False)

    def _exchange(self, unread: bytes) -> Optional[bytes]:
        """Relay one request and its response. Returns what was read past the request (the start of the
        next one), or None when the connection ends."""
        self.client.new_exchange(unread)
        request = self.client.next_event()
        if type(request) is not h11.Request:
            return None  # the client closed its connection between requests
        method, target = request.method.decode(), request.target.decode()
        exchange, callbacks = self.proxy._arrived(method, target)
        if callbacks:
            headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw_items()]
            for callback in callbacks:
                callback.fn(method, target, headers)
        fault = exchange.fault
        if isinstance(fault, Status):
            self._answer(request, fault, exchange)
            return None
        server = self._server()
        server.send(h11.Request(method=request.method, target=request.target, headers=request.headers.raw_items()))
        framing = _framing(request)
        reset_at = fault.after_bytes if isinstance(fault, ResetMidBody) and fault.direction == "request" else None
        self.request_read = framing == 0 and reset_at is None
        unread_after = self.client.unread()[framing:] if isinstance(framing, int) else None
        body_pump = None
        if not self.request_read:
            body_pump = threading.Thread(
                target=self._pump_request_body, args=(server, framing, fault, reset_at), daemon=True
            )
            body_pump.start()
        response, response_framing = self._relay_response(server, request, fault, exchange)
        if body_pump is not None:
            body_pump.join(1.0)  # done already, normally: the server answered once it had the whole request
            if body_pump.is_alive():
                # The server answered before it had the whole body. As a server does, say so (FIN) and
                # take in what the client still sends (the pump reads it) for a while, so that it reads
                # the answer rather than a reset.
                with contextlib.suppress(OSError):
                    _shutdown(self.client.sock, socket.SHUT_WR)
                body_pump.join(LINGER_LIMIT)
                return None
        # As h11 has it: HTTP/1.1, and no one said Connection: close. The server's connection may end while
        # the client's goes on (the next request gets a new one): it ends when the body did, or when the
        # server speaks HTTP/1.0 (its answer reaches the client as HTTP/1.1, which keeps the connection).
        keep_alive = self.request_read and request.http_version >= b"1.1" and not _says_close(request)
        keep_alive = keep_alive and not _says_close(response)
        self.server_reusable = keep_alive and response.http_version >= b"1.1" and response_framing != "close"
        if not keep_alive:
            return None
        return unread_after if unread_after is not None else self.client.unread()

    def _server(self) -> _Peer:
        if self.server is not None and not (self.server_reusable and self.server.idle()):
            _drop(self.server.sock, reset=False)
            self.proxy._forget(self.server.sock)
            self.server = None
        if self.server is None:
            try:
                self.server = _Peer(self.proxy._connect(), h11.CLIENT)
            except OSError:
                self._close(reset=True)  # as the client would see a server that is not there
                raise
        self.server.new_exchange()
        self.server_reusable = False  # until this exchange has gone through
        return self.server

    def _answer(self, request, fault: Status, exchange: Exchange) -> None:
        body = fault.payload()
        headers = [("Content-Type", fault.content_type), ("Content-Length", str(len(body))), ("Connection", "close")]
        self.client.send(h11.Response(status_code=fault.status, headers=headers + list(fault.headers)))
        if request.method != b"HEAD":
            self.client.send(h11.Data(data=body))
        self.client.send(h11.EndOfMessage())
        exchange.status = fault.status
        self._linger()

    def _linger(self) -> None:
        """Close after an answer given before the request's body was read. Closing with unread data sends
        a reset, which can reach the client before it read the answer; so first a FIN, then read and
        discard what the client still sends, until it closes (it has read the answer) or goes quiet."""
        sock = self.client.sock
        with contextlib.suppress(OSError):
            _shutdown(sock, socket.SHUT_WR)
            sock.settimeout(LINGER_IDLE)
            deadline = time.monotonic() + LINGER_LIMIT
            while sock.recv(CHUNK) and time.monotonic() < deadline:
                pass

    def _pump_request_body(
        self, server: _Peer, framing: Union[int, str], fault: Optional[Fault], reset_at: Optional[int]
    ) -> None:
        """The request's body, client to server, in a thread of its own; reset_at: ResetMidBody's."""
        server_reads = True

        def send(data) -> None:
            nonlocal server_reads
            if not server_reads:
                return
            try:
                if framing == "chunked":
                    server.send(h11.Data(data=data))
                else:
                    server.sock.sendall(data)
            except OSError:
                server_reads = False  # it answered and closed early: read on, the client is still sending

        try:
            chunks = self.client.h11_body() if framing == "chunked" else self.client.raw_body(framing)
            self._relay_body(chunks, send, fault, stop_at=reset_at)
            if framing == "chunked" and server_reads:
                server.send(h11.EndOfMessage(headers=self.client.end_of_message.headers.raw_items()))
            self.request_read = True
        except _Hangup:
            pass  # the fault's reset
        except (OSError, h11.ProtocolError):
            # The client went away mid-body: the server, waiting for the rest, would keep the relay's
            # other thread waiting for an answer. Reset both.
            self._close(reset=True)

    def _relay_response(self, server: _Peer, request, fault: Optional[Fault], exchange: Exchange):
        """Interim answers, then the final one: returns its head and how its body ended."""
        while type(response := server.next_event()) is h11.InformationalResponse:
            headers = response.headers.raw_items()
            self.client.send(
                h11.InformationalResponse(status_code=response.status_code, headers=headers, reason=response.reason)
            )
        if type(response) is not h11.Response:
            raise _Hangup()  # the server closed the connection without answering: so does the relay
        if isinstance(fault, Stall) and fault.after_bytes is None:
            self._stall(fault)
        headers = response.headers.raw_items()
        self.client.send(h11.Response(status_code=response.status_code, headers=headers, reason=response.reason))
        exchange.status = response.status_code
        framing = _framing(response, request.method)
        stop_at = None
        if (isinstance(fault, ResetMidBody) and fault.direction == "response") or isinstance(fault, Stall):
            stop_at = fault.after_bytes
        corrupt_at = fault.offset if isinstance(fault, Corrupt) else None
        if isinstance(framing, int):
            self._relay_body(server.raw_body(framing), self.client.sock.sendall, fault, stop_at, corrupt_at)
        else:
            send = self._send_data_to_client
            self._relay_body(server.h11_body(), send, fault, stop_at, corrupt_at)
            self.client.send(h11.EndOfMessage(headers=server.end_of_message.headers.raw_items()))
        return response, framing

    def _send_data_to_client(self, data) -> None:
        self.client.send(h11.Data(data=data))

    def _relay_body(
        self,
        chunks: Iterable,
        send: Callable,
        fault: Optional[Fault],
        stop_at: Optional[int] = None,
        corrupt_at: Optional[int] = None,
    ) -> None:
        """Relay a body, flipping the byte at ``corrupt_at``, and acting out ``fault`` (a reset or a stall)
        once ``stop_at`` bytes have gone (or at the end of a shorter body)."""
        relayed = 0
        for data in chunks:
            if corrupt_at is not None and relayed <= corrupt_at < relayed + len(data):
                data = bytearray(data)
                data[corrupt_at - relayed] ^= 0xFF
            if stop_at is not None and relayed + len(data) >= stop_at:
                send(data[: stop_at - relayed])
                self._stop(fault)
            send(data)
            relayed += len(data)
        if stop_at is not None:
            self._stop(fault)

    def _stop(self, fault: Fault) -> None:
        if isinstance(fault, Stall):
            self._stall(fault)
        self._close(reset=True, bare=True)
        raise _Hangup()

    def _stall(self, fault: Stall) -> None:
        self.proxy._cut_off.wait(fault.seconds)
        self._close(reset=False)
        raise _Hangup()

    def _close(self, reset: bool, bare: bool = False) -> None:
        """Close both sides: with a reset (RST, what a fault shows the client), or plainly (FIN). ``bare``:
        the client gets the RST alone, which only a fault's own reset can do (see _drop): no other thread
        sends to the client then (the other one, if any, waits for the server or reads the request)."""
        _drop(self.client.sock, reset, deliver=True, bare=bare)
        self.proxy._forget(self.client.sock)
        if self.server is not None:
            _drop(self.server.sock, reset, deliver=True)
            self.proxy._forget(self.server.sock)


def _drop(sock: socket.socket, reset: bool, deliver: bool = False, bare: bool = False) -> None:
    """Close a socket that another thread may be blocked on: shutdown() is what wakes it (close() alone
    would not). With ``reset``, SO_LINGER 0 makes the close a reset, which throws away what was not sent
    yet: ``deliver`` waits for that first. ``bare``: shutdown(SHUT_RD) only, which wakes a blocked recv()
    but puts nothing on the wire, so the peer sees a bare RST (SHUT_WR would send a FIN just before it);
    only where no other thread can be blocked sending (SHUT_RD does not wake a send())."""
    if sock.fileno() == -1:
        return  # closed already (the other thread got there first)
    with contextlib.suppress(OSError):
        if reset and deliver:
            _wait_until_sent(sock)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
        _shutdown(sock, socket.SHUT_RD if bare else socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def _shutdown(sock: socket.socket, how: int) -> None:
    """The TCP shutdown, of a TLS socket too, without a close_notify. Not ssl.SSLSocket.shutdown(): that one
    also drops the TLS state, so that the thread still using the socket would go on reading the encrypted
    bytes as they are, or worse, send its plain text (after SHUT_RD, which leaves sending open)."""
    socket.socket.shutdown(sock, how)


def _wait_until_sent(sock: socket.socket, limit: float = 1.0) -> None:
    """SO_LINGER 0 throws away what the socket has not yet sent: wait (a little) for the peer to have it
    all, so that a fault's "first n bytes" all arrive. TIOCOUTQ: bytes not yet acknowledged (Linux)."""
    deadline = time.monotonic() + limit
    with contextlib.suppress(OSError, ValueError):  # ValueError: closed meanwhile by the other thread
        while struct.unpack("i", fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0\0\0\0"))[0]:
            if time.monotonic() > deadline:
                return
            time.sleep(0.001)

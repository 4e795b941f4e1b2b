"""A reverse proxy in front of the real registry that can lie, stall, and tell what it saw.

Registry failures worth testing (429 with Retry-After, 503, a request that never answers)
can't be provoked from a real distribution registry. The proxy forwards everything
byte-for-byte (method, path+query, headers including Host and Authorization, body; status,
headers, body back), so the registry really does the work, except for the requests a test
has scripted or while `hang` is set.

It is thread based (`http.server`) so that it works under any test, sync or trio. The Host
header is forwarded as sent, so the absolute `Location` URLs distribution builds from it
point back at the proxy and an upload stays on the proxied path.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import socket
import threading
import time
import urllib.parse
from collections import deque
from typing import Any

import attrs

from gopher_updater.testing.server_thread import ServerThread

#: Connection-level headers a proxy must not pass on (RFC 9110 §7.6.1).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


@attrs.frozen
class FaultResponse:
    """A canned answer served instead of forwarding one request."""

    status: int
    headers: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""


@attrs.frozen
class ProxyRecord:
    """One request the proxy saw. `status` is None for a request held by `hang`.

    `at` is `time.monotonic()` when the request had been read. Records are appended when the
    answer is sent (at arrival for hung requests).
    """

    method: str
    path: str
    status: int | None
    at: float
    canned: bool = False


class FaultProxy:
    """Thread-based HTTP reverse proxy on 127.0.0.1:0 in front of `upstream`.

    `script(*responses)` queues canned answers for the next requests, in order; `hang = True`
    makes every following request be read and never answered until `hang` is cleared or the
    proxy stops (then its connection is dropped). Use as a context manager.
    """

    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"FaultProxy needs a plain http upstream, got {upstream!r}")
        self.upstream = upstream
        self._up_host = parts.hostname
        self._up_port = parts.port or 80
        self.hang = False
        self.log: list[ProxyRecord] = []
        self._script: deque[FaultResponse] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._unhang = threading.Condition(self._lock)
        self._conns: set[socket.socket] = set()
        self._serving: ServerThread | None = None
        self.url = ""

    def __repr__(self) -> str:
        return f"FaultProxy(url={self.url!r}, upstream={self.upstream!r})"

    def script(self, *responses: FaultResponse) -> None:
        """The next `len(responses)` requests get these answers instead of being forwarded."""
        with self._lock:
            self._script.extend(responses)

    def set_hang(self, value: bool) -> None:
        """Like assigning `hang`, but also releases requests already hung when clearing it."""
        with self._lock:
            self.hang = value
            self._unhang.notify_all()

    @property
    def pending_script(self) -> int:
        with self._lock:
            return len(self._script)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: with Nagle on, the body waits for the
            # client's delayed ACK (~40 ms on Linux) and every proxied GET reads that slow.
            # (The upstream side is http.client, which sets TCP_NODELAY itself.)
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner._conns.add(self.connection)

            def finish(self) -> None:
                with owner._lock:
                    owner._conns.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except OSError:
                    self.close_connection = True

            def __getattr__(self, name: str) -> Any:
                # Every method (GET, HEAD, PUT, POST, PATCH, DELETE, ...) is proxied.
                if name.startswith("do_"):
                    return lambda: owner._handle(self)
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._serving = ServerThread(Handler)
        self.url = f"http://127.0.0.1:{self._serving.port}"

    def stop(self) -> None:
        """Stop serving and drop every open connection, hung ones included; never blocks long."""
        self._stopping.set()
        with self._lock:
            self._unhang.notify_all()
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._serving is not None:
            self._serving.stop()
            self._serving = None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- requests --------------------------------------------------------------------------

    def _add(self, record: ProxyRecord) -> None:
        with self._lock:
            self.log.append(record)

    @staticmethod
    def _read_body(req: http.server.BaseHTTPRequestHandler) -> bytes:
        if "chunked" in req.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(req.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while req.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(req.rfile.read(size))
                req.rfile.readline()
        length = int(req.headers.get("Content-Length", "0") or "0")
        return req.rfile.read(length) if length else b""

    def _handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
        body = self._read_body(req)
        arrived = time.monotonic()
        with self._lock:
            hung = self.hang and not self._stopping.is_set()
            canned = self._script.popleft() if not hung and self._script else None
        if hung:
            self._add(ProxyRecord(req.command, req.path, None, arrived))
            with self._lock:
                while self.hang and not self._stopping.is_set():
                    self._unhang.wait(timeout=0.1)
            # Released by stop() (or by clearing hang): the request is never answered.
            req.close_connection = True
            return
        if canned is not None:
            self._send(req, canned.status, list(canned.headers.items()), canned.body)
            self._add(ProxyRecord(req.command, req.path, canned.status, arrived, canned=True))
            return
        status, headers, resp_body = self._forward(req, body)
        self._send(req, status, headers, resp_body, keep_length=True)
        self._add(ProxyRecord(req.command, req.path, status, arrived))

    def _forward(
        self, req: http.server.BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = [(k, v) for k, v in req.headers.items() if k.lower() not in _HOP_BY_HOP]
        if body and not any(k.lower() == "content-length" for k, _ in headers):
            headers.append(("Content-Length", str(len(body))))
        conn = http.client.HTTPConnection(self._up_host, self._up_port, timeout=30)
        try:
            conn.putrequest(req.command, req.path, skip_host=True, skip_accept_encoding=True)
            for key, value in headers:
                conn.putheader(key, value)
            conn.endheaders(body or None)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, list(resp.getheaders()), data
        except OSError as exc:
            msg = f'{{"errors":[{{"code":"BAD_GATEWAY","message":"{type(exc).__name__}"}}]}}'
            return 502, [("Content-Type", "application/json")], msg.encode()
        finally:
            conn.close()

    @staticmethod
    def _send(
        req: http.server.BaseHTTPRequestHandler,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        keep_length: bool = False,
    ) -> None:
        """Send an answer; HEAD keeps the upstream Content-Length but sends no body."""
        is_head = req.command == "HEAD"
        req.send_response_only(status)
        has_length = False
        for key, value in headers:
            lower = key.lower()
            if lower in _HOP_BY_HOP:
                continue
            if lower == "content-length":
                if not (keep_length and is_head):
                    continue
                has_length = True
            req.send_header(key, value)
        if not has_length:
            req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if not is_head and body:
            req.wfile.write(body)

"""A local notification sink: real HTTP on 127.0.0.1 that records every POST.

Both notification channels are tested against it over real sockets: the webhook channel
posts its signed JSON here, and Apprise's `json://127.0.0.1:<port>/<path>` service posts its
own JSON here. It verifies `X-Signature` when given the key (as a Flux `generic-hmac`
Receiver would), and it misbehaves on demand: error answers for the next N posts, or a hang
of N seconds, which is what "a slow service never delays a poll" is tested with.

It is a threaded stdlib server (see `server_thread`) on purpose: Apprise posts from a worker
thread with `requests`, and a hanging answer must not stop the sink from serving the others.
A hang waits on an event that `stop()` sets, so a test never waits out a hang at teardown.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from typing import Any

import attrs

from gopher_updater.testing.server_thread import ServerThread


@attrs.frozen
class Post:
    """One request as received; `signature_ok` is None when the sink has no key."""

    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status: int
    signature_ok: bool | None
    received_at: float

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


def verify_signature(key: bytes, body: bytes, header: str | None) -> bool:
    """`sha256=<hex>` over the exact body, compared in constant time; any other form fails."""
    if not header or "=" not in header:
        return False
    algo, _, digest = header.partition("=")
    if algo != "sha256":
        return False
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, digest.lower())


class NotifySink:
    """Use as a context manager, or call `stop()`. Thread-safe; all state behind one lock."""

    def __init__(self, key: bytes | None = None, *, strict: bool = False) -> None:
        """`key` checks every post's `X-Signature`; `strict` also answers a bad one with 400."""
        self.key = key
        self.strict = strict
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._posts: list[Post] = []
        self._failures: list[int] = []
        self._hangs: list[float] = []
        self._hang_all: float = 0.0
        self._in_flight = 0
        self._server = ServerThread(self._handler_class())
        self.port = self._server.port
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> NotifySink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ set-up

    def apprise_url(self, path: str = "/apprise") -> str:
        """An Apprise `json://` URL that posts to this sink under `path`."""
        return f"json://127.0.0.1:{self.port}{path}"

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def hang_next(self, count: int, seconds: float) -> None:
        with self._lock:
            self._hangs.extend([seconds] * count)

    def hang_all(self, seconds: float) -> None:
        """Every later post waits `seconds` (0 turns it off) before it is answered."""
        with self._lock:
            self._hang_all = seconds

    def stop(self) -> None:
        self._stopping.set()
        self._server.stop()

    # ------------------------------------------------------------------ reading

    @property
    def posts(self) -> list[Post]:
        with self._lock:
            return list(self._posts)

    @property
    def in_flight(self) -> int:
        """Requests received but not yet answered (a hang in progress shows here)."""
        with self._lock:
            return self._in_flight

    def posts_to(self, path: str) -> list[Post]:
        return [p for p in self.posts if p.path == path]

    def wait_for(self, count: int, timeout: float = 10.0, path: str | None = None) -> list[Post]:
        """Block (a thread, not trio) until `count` posts (to `path`) were recorded."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                posts = [p for p in self._posts if path is None or p.path == path]
                left = deadline - time.monotonic()
                if len(posts) >= count or left <= 0:
                    return posts
                self._changed.wait(left)

    # ------------------------------------------------------------------ serving

    def _answer(self, path: str, headers: tuple[tuple[str, str], ...], body: bytes) -> int:
        with self._lock:
            status = self._failures.pop(0) if self._failures else 200
            hang = self._hangs.pop(0) if self._hangs else self._hang_all
            self._in_flight += 1
        if hang > 0:
            self._stopping.wait(hang)
        signature_ok = None
        if self.key is not None:
            sent = next((v for k, v in headers if k.lower() == "x-signature"), None)
            signature_ok = verify_signature(self.key, body, sent)
            if self.strict and not signature_ok and status == 200:
                status = 400  # what a Flux generic-hmac Receiver answers
        post = Post(path, headers, body, status, signature_ok, time.time())
        with self._changed:
            self._in_flight -= 1
            self._posts.append(post)
            self._changed.notify_all()
        return status

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status = sink._answer(self.path, tuple(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                if sink._stopping.is_set():
                    self.send_header("Connection", "close")  # sets close_connection
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the request line holds the path, which may be a secret."""

        return Handler

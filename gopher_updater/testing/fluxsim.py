"""A faithful Flux notification-controller Receiver endpoint, served on loopback.

It mirrors the controller's `handlePayload` (notification-controller v1.0-v1.9, see the
project's Flux Receiver reference), in this order: body capped at 3 MiB (413), exact
lookup of the raw request URI (path and query) among the webhook paths of Receivers that
were Ready at the last `reconcile()` (404), suspended or no longer Ready (503), validation
(`generic`: none; `generic-hmac`: `X-Signature: sha1|sha256|sha512=<hex>` over the raw body
keyed with the Secret's *current* token, else 400), then the `requestedAt` annotation of
every listed resource (a missing object, or a kind without a default apiVersion, is 500
after the others were annotated). Every answer has an empty body; any method is accepted.

The path is `/hook/` + sha256(token + name + namespace) computed from the Secret's token
bytes as they are, so a token with a trailing newline is another path, as in the cluster.
`rotate_token` changes the Secret but not the path until `reconcile()`, as the controller
does. Fault knobs: `force` (answer a status to the next N calls), `drop` (close the next N
connections unanswered), `delay`, and `stop()` (connection refused).

It runs in a daemon thread (see server_thread.py) so it keeps answering while a test's trio
loop is busy, and records every call for the test to read.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.server
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence

import attrs

from gopher_updater.testing.server_thread import ServerThread

GENERIC, GENERIC_HMAC = "generic", "generic-hmac"
MAX_BODY = 3 * 1024 * 1024
_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_SOURCE = "source.toolkit.fluxcd.io/v1"
#: apiVersions the controller fills in when a resource omits one (v1.7.5+).
DEFAULT_API_VERSIONS = {
    "GitRepository": _SOURCE,
    "OCIRepository": _SOURCE,
    "Bucket": _SOURCE,
    "HelmChart": _SOURCE,
    "HelmRepository": _SOURCE,
    "ImageRepository": "image.toolkit.fluxcd.io/v1",
    "ArtifactGenerator": "source.extensions.fluxcd.io/v1beta1",
}


def webhook_path(token: bytes, name: str, namespace: str) -> str:
    """`status.webhookPath`: /hook/ + sha256 hex of token + name + namespace, no separator."""
    return "/hook/" + hashlib.sha256(token + name.encode() + namespace.encode()).hexdigest()


@attrs.frozen
class Resource:
    """An entry of `spec.resources`; namespace None = the Receiver's, api_version None = default."""

    kind: str
    name: str
    namespace: str | None = None
    api_version: str | None = None
    match_labels: Mapping[str, str] | None = None


@attrs.frozen
class ObjectKey:
    api_version: str
    kind: str
    namespace: str
    name: str


@attrs.define
class SimReceiver:
    name: str
    namespace: str
    token: bytes  # the Secret's `token` value, verbatim
    type: str = GENERIC_HMAC
    resources: tuple[Resource, ...] = ()
    ready: bool = True
    suspended: bool = False


@attrs.frozen
class Call:
    """One request as the simulator saw and answered it. `at` is time.monotonic()."""

    at: float
    method: str
    raw_uri: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status: int | None  # None: the connection was dropped unanswered
    verdict: str  # accepted, too_large, not_found, not_ready, bad_signature,
    # resource_error, forced, dropped
    receiver: str | None = None  # namespace/name when the path matched

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


class FluxSim:
    """Receivers, the objects they annotate, and the HTTP endpoint in front of them."""

    def __init__(
        self,
        receivers: Iterable[SimReceiver] = (),
        objects: Iterable[ObjectKey | tuple[ObjectKey, Mapping[str, str]]] = (),
    ) -> None:
        self._lock = threading.Lock()
        self.receivers = {(r.namespace, r.name): r for r in receivers}
        self.labels: dict[ObjectKey, dict[str, str]] = {}
        for obj in objects:
            key, labels = obj if isinstance(obj, tuple) else (obj, {})
            self.labels[key] = dict(labels)
        #: requestedAt annotations written, per object, oldest first.
        self.annotations: dict[ObjectKey, list[str]] = {k: [] for k in self.labels}
        self._index: dict[str, tuple[str, str]] = {}
        self._calls: list[Call] = []
        self._forced: list[int] = []
        self._drops = 0
        self.delay = 0.0
        self._server: ServerThread | None = None
        self.reconcile()

    @classmethod
    def for_image_repository(
        cls, token: bytes, *, name: str = "gopher-updater", namespace: str = "flux-system"
    ) -> FluxSim:
        """The example's set-up (containers/flux/receiver.yaml): one generic-hmac Receiver
        listing the ImageRepository `node`, which exists in `namespace`."""
        image_repository = ObjectKey(
            "image.toolkit.fluxcd.io/v1", "ImageRepository", namespace, "node"
        )
        receiver = SimReceiver(
            name, namespace, token, resources=(Resource("ImageRepository", "node"),)
        )
        return cls([receiver], objects=[image_repository])

    # -- control ---------------------------------------------------------------------------

    def start(self) -> str:
        """Serve on 127.0.0.1; returns the base URL (the webhook-receiver Service's)."""
        sim = self

        class Handler(_Handler):
            pass

        Handler.sim = sim
        self._server = ServerThread(Handler)
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> FluxSim:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.port}"

    def reconcile(self) -> None:
        """Re-key every Ready Receiver's path from its Secret's current token."""
        with self._lock:
            self._index = {
                webhook_path(r.token, r.name, r.namespace): key
                for key, r in self.receivers.items()
                if r.ready
            }

    def webhook_path_of(self, name: str, namespace: str = "flux-system") -> str:
        """The Receiver's published `status.webhookPath` (as of the last reconcile)."""
        with self._lock:
            for path, key in self._index.items():
                if key == (namespace, name):
                    return path
        raise KeyError(f"{namespace}/{name} is not reconciled")

    def url(self, name: str, namespace: str = "flux-system") -> str:
        return self.base_url + self.webhook_path_of(name, namespace)

    def rotate_token(self, name: str, namespace: str, token: bytes) -> None:
        with self._lock:
            self.receivers[(namespace, name)].token = token

    def force(self, status: int, times: int = 1) -> None:
        """Answer `status` (empty body) to the next `times` calls, whatever they are."""
        with self._lock:
            self._forced += [status] * times

    def drop(self, times: int = 1) -> None:
        """Close the next `times` connections without an answer."""
        with self._lock:
            self._drops += times

    def calls(self) -> tuple[Call, ...]:
        with self._lock:
            return tuple(self._calls)

    # -- the controller's logic ------------------------------------------------------------

    def answer(
        self, method: str, raw_uri: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> Call:
        """Decide and record one request (the HTTP layer has read the body, capped)."""
        # Go's Header.Get: case-insensitive name, the first value.
        signature = next((v for k, v in headers if k.lower() == "x-signature"), "")
        with self._lock:
            status, verdict, receiver = self._decide(raw_uri, signature, body)
            call = Call(
                time.monotonic(),
                method,
                raw_uri,
                tuple(headers),
                body[:MAX_BODY],
                status,
                verdict,
                receiver,
            )
            self._calls.append(call)
            return call

    def _decide(
        self, raw_uri: str, signature: str, body: bytes
    ) -> tuple[int | None, str, str | None]:
        if self._drops:
            self._drops -= 1
            return None, "dropped", None
        if self._forced:
            return self._forced.pop(0), "forced", None
        if len(body) > MAX_BODY:
            return 413, "too_large", None
        key = self._index.get(raw_uri)
        if key is None:
            return 404, "not_found", None
        receiver = self.receivers[key]
        shown = f"{receiver.namespace}/{receiver.name}"
        if receiver.suspended or not receiver.ready:
            return 503, "not_ready", shown
        if receiver.type == GENERIC_HMAC and not _valid_signature(signature, body, receiver.token):
            return 400, "bad_signature", shown
        if not self._annotate(receiver):
            return 500, "resource_error", shown
        return 200, "accepted", shown

    def _annotate(self, receiver: SimReceiver) -> bool:
        ok = True
        now = datetime.datetime.now(datetime.UTC).isoformat()
        for res in receiver.resources:
            namespace = res.namespace or receiver.namespace
            api_version = res.api_version or DEFAULT_API_VERSIONS.get(res.kind)
            if api_version is None:
                ok = False
                continue
            if res.name == "*":
                if not res.match_labels:
                    ok = False
                    continue
                targets = [
                    k
                    for k, labels in self.labels.items()
                    if (k.api_version, k.kind, k.namespace) == (api_version, res.kind, namespace)
                    and res.match_labels.items() <= labels.items()
                ]
            else:
                targets = [ObjectKey(api_version, res.kind, namespace, res.name)]
            for target in targets:
                if target not in self.labels:
                    ok = False
                    continue
                self.annotations[target].append(now)
        return ok


def _valid_signature(header: str, body: bytes, token: bytes) -> bool:
    """go-github's ValidateSignature, as the controller calls it."""
    algorithm, sep, hex_mac = header.partition("=")
    if not header or not sep or algorithm not in _ALGORITHMS or not _HEX.fullmatch(hex_mac):
        return False
    expected = hmac.new(token, body, _ALGORITHMS[algorithm]).digest()
    return hmac.compare_digest(expected, bytes.fromhex(hex_mac))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Go's net/http
    sim: FluxSim

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return chunks
                chunks += self.rfile.read(size)
                self.rfile.readline()
                if len(chunks) > MAX_BODY:
                    self.close_connection = True
                    return chunks
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True  # the rest is never read
        return self.rfile.read(min(length, MAX_BODY + 1))

    def _any(self) -> None:
        body = self._read_body()
        headers = list(self.headers.items())
        call = self.sim.answer(self.command, self.path, headers, body)
        if self.sim.delay:
            time.sleep(self.sim.delay)
        if call.status is None:
            self.close_connection = True
            return
        self.send_response(call.status)
        self.send_header("Content-Length", "0")
        if self.close_connection:
            # As Go's net/http does when it leaves a body unread: say so, or the
            # client reuses a connection the server is about to close (a race).
            self.send_header("Connection", "close")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    def log_message(self, format: str, *args: object) -> None:
        pass  # the calls are recorded; stderr stays quiet

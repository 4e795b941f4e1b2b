"""An in-memory registry behind `httpx.MockTransport`, for tests that need a hostile or
misbehaving registry (faults, echoes, mutated answers) on trio's MockClock (no sockets, so
simulated time is the only time that passes).

The real-registry tests (test_registry.py) prove the protocol; this fake only needs to be
right enough for a retag (HEAD, GET, PUT of manifests) so that faults can be layered on top.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import httpx
import trio

from gopher_updater.registry import RegistryClient

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SOURCE, TARGET = "release-v1", "mainnet-v1"
BASE = "https://registry.test"
PASSWORD = "s3cret-Pa55word-xyz"

Fault = Callable[[httpx.Request], httpx.Response | None]


def manifest_bytes() -> bytes:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": []}
    return json.dumps(doc).encode()


class FakeRegistry:
    """Tags -> manifest bytes; `faults` answer (in order) before the registry does.

    `times` holds `trio.current_time()` of every request, so tests on MockClock can measure
    waits in simulated time.
    """

    def __init__(self, *faults: Fault, always: Fault | None = None) -> None:
        self.tags: dict[str, bytes] = {SOURCE: manifest_bytes()}
        self.faults = list(faults)
        self.always = always
        self.times: list[float] = []
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.times.append(trio.current_time())
        self.requests.append(request)
        while self.faults:
            answer = self.faults.pop(0)(request)
            if answer is not None:
                return answer
        if self.always is not None and (answer := self.always(request)) is not None:
            return answer
        return self.answer(request)

    def answer(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200, json={})
        tag = request.url.path.rsplit("/", 1)[-1]
        if request.method == "PUT":
            self.tags[tag] = request.content
            return httpx.Response(201, headers={"Docker-Content-Digest": digest(request.content)})
        body = self.tags.get(tag)
        if body is None:
            errors = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
            return httpx.Response(404, json=errors)
        headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest(body)}
        return httpx.Response(
            200, headers=headers, content=b"" if request.method == "HEAD" else body
        )

    def client(self, **kw: object) -> RegistryClient:
        options: dict[str, object] = {"timeout": 5.0, "deadline": 30.0, **kw}
        return RegistryClient(
            base_url=BASE,
            repository="org/node",
            user="alice",
            password=PASSWORD,
            transport=httpx.MockTransport(self.handler),
            **options,  # type: ignore[arg-type]
        )


def digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def canned(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Fault:
    return lambda request: httpx.Response(status, headers=headers, content=body)

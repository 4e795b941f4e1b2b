"""The registry client against a real distribution registry, in all three auth modes.

Results are checked independently of the client: by the rig's own raw HEAD/GET and by skopeo.
Faults (429/503, a registry that never answers, a lying digest header) come from the rig's
FaultProxy in front of the real registry. The clock is the real one because the registry is a
real process: waits are kept to about a second in total.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
import trio

from gopher_updater.manifest import Manifest, Outcome, RetagOutcome
from gopher_updater.model import Digest
from gopher_updater.registry import RegistryClient
from gopher_updater.registry_errors import (
    DigestMismatch,
    RegistryAuthError,
    RegistryRequestError,
    RegistryUnavailable,
)
from gopher_updater.registry_retry import RetryPolicy
from gopher_updater.testing.registry import FaultProxy, FaultResponse, ImageKind, RunningRegistry

pytestmark = pytest.mark.registry

#: Written out here rather than imported, so a regression in the client's list shows up.
ALL_FOUR = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
KINDS: list[ImageKind] = ["docker-v2", "oci-manifest", "oci-index", "docker-list"]
#: Test-speed waits: the backoff, and the Retry-After floor too (production: 0.5 s + jitter).
FAST = RetryPolicy(
    wait_initial=0.01, wait_max=0.05, wait_jitter=0.01, floor=0.01, floor_jitter=0.01
)
SOURCE, TARGET = "release-v1", "prod-v1"


class Calls:
    """`on_request` sink: (method, status) of every request, token requests included."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, method: str, status: str) -> None:
        self.seen.append((method, status))

    @property
    def methods(self) -> list[str]:
        return [m for m, _ in self.seen]


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real network transport, keeping every request it sends (headers included)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def make_client(
    reg: RunningRegistry,
    repo: str,
    *,
    url: str | None = None,
    reader: bool = False,
    password: str | None = None,
    **kw: object,
) -> RegistryClient:
    user, pw = (reg.reader_user, reg.reader_password) if reader else (reg.user, reg.password)
    options: dict[str, object] = {"timeout": 2.0, "deadline": 5.0, "retry": FAST, **kw}
    return RegistryClient(
        base_url=url or reg.url,
        repository=repo,
        user=user,
        password=pw if password is None else password,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["basic", "token"])
def authed_registry(request: pytest.FixtureRequest) -> RunningRegistry:
    reg = request.getfixturevalue(f"registry_{request.param}")
    assert isinstance(reg, RunningRegistry)
    return reg


# -- promotion ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_retag_keeps_the_exact_manifest(
    registry: RunningRegistry, unique_repo: str, kind: ImageKind
) -> None:
    src = registry.push_image(unique_repo, SOURCE, kind)
    calls = Calls()
    async with make_client(registry, unique_repo, on_request=calls) as client:
        outcome = await client.retag(SOURCE, TARGET)
        assert outcome == RetagOutcome(Outcome.PROMOTED, SOURCE, TARGET, Digest(src), None, False)
        assert registry.skopeo_digest(unique_repo, TARGET) == src
        assert registry.manifest(unique_repo, TARGET) == registry.manifest(unique_repo, SOURCE)

        calls.seen.clear()
        again = await client.retag(SOURCE, TARGET)
    assert again.outcome is Outcome.ALREADY_PROMOTED
    assert again.previous_target_digest == Digest(src)
    assert calls.methods == ["HEAD", "HEAD"]  # no GET (a counted pull on Hub), no PUT


async def test_warm_promotion_costs_five_requests(
    registry: RunningRegistry, unique_repo: str
) -> None:
    src = registry.push_image(unique_repo, SOURCE, "oci-index")
    calls = Calls()
    async with make_client(registry, unique_repo, on_request=calls) as client:
        await client.check_push_access()
        tokens = registry.token_server.requests if registry.token_server else 0
        before = client.request_count
        calls.seen.clear()
        outcome = await client.retag(SOURCE, TARGET)
        assert client.request_count - before == 5
    assert outcome.outcome is Outcome.PROMOTED
    assert calls.seen == [("HEAD", "200"), ("HEAD", "404"), ("GET", "200"), ("PUT", "201"),
                          ("HEAD", "200")]  # fmt: skip
    assert (registry.token_server.requests if registry.token_server else 0) == tokens
    assert registry.head_digest(unique_repo, TARGET) == src


async def test_every_manifest_request_accepts_all_four_media_types(
    registry: RunningRegistry, unique_repo: str
) -> None:
    # distribution answers an OCI index asked for with only the Docker types with 404.
    src = registry.push_image(unique_repo, SOURCE, "oci-index")
    transport = RecordingTransport()
    async with make_client(registry, unique_repo, transport=transport) as client:
        assert (await client.retag(SOURCE, TARGET)).outcome is Outcome.PROMOTED
    reads = [
        r for r in transport.requests if r.method in ("GET", "HEAD") and "/manifests/" in r.url.path
    ]
    assert len(reads) >= 4
    for request in reads:
        accepted = {t.strip() for t in request.headers["accept"].split(",")}
        assert accepted >= set(ALL_FOUR), request.headers["accept"]
    puts = [r for r in transport.requests if r.method == "PUT"]
    assert puts
    for put in puts:
        assert put.headers["content-type"] == "application/vnd.oci.image.index.v1+json"
    assert registry.skopeo_digest(unique_repo, TARGET) == src


async def test_conflict_leaves_the_target_untouched(
    registry: RunningRegistry, unique_repo: str
) -> None:
    src = registry.push_image(unique_repo, SOURCE, "docker-v2")
    other = registry.push_image(unique_repo, TARGET, "docker-v2")
    calls = Calls()
    async with make_client(registry, unique_repo, on_request=calls) as client:
        outcome = await client.retag(SOURCE, TARGET)
    assert outcome == RetagOutcome(
        Outcome.CONFLICT, SOURCE, TARGET, Digest(src), Digest(other), False
    )
    assert "PUT" not in calls.methods
    assert registry.head_digest(unique_repo, TARGET) == other


async def test_overwrite_target_replaces_it(registry: RunningRegistry, unique_repo: str) -> None:
    src = registry.push_image(unique_repo, SOURCE, "docker-list")
    other = registry.push_image(unique_repo, TARGET, "oci-manifest")
    async with make_client(registry, unique_repo, overwrite_target=True) as client:
        outcome = await client.retag(SOURCE, TARGET)
    assert outcome.outcome is Outcome.PROMOTED
    assert outcome.previous_target_digest == Digest(other)
    assert registry.skopeo_digest(unique_repo, TARGET) == src


async def test_source_missing(registry: RunningRegistry, unique_repo: str) -> None:
    async with make_client(registry, unique_repo) as client:
        # the repository does not exist at all yet (NAME_UNKNOWN) ...
        outcome = await client.retag(SOURCE, TARGET)
        assert outcome.outcome is Outcome.SOURCE_MISSING
        registry.push_image(unique_repo, "release-other", "docker-v2")
        # ... and then only the tag is missing (MANIFEST_UNKNOWN)
        outcome = await client.retag(SOURCE, TARGET)
        assert (outcome.outcome, outcome.source_digest) == (Outcome.SOURCE_MISSING, None)
        assert await client.digest(SOURCE) is None
    assert registry.head_digest(unique_repo, TARGET) is None


async def test_dry_run_writes_nothing(registry: RunningRegistry, unique_repo: str) -> None:
    src = registry.push_image(unique_repo, SOURCE, "oci-manifest")
    calls = Calls()
    async with make_client(registry, unique_repo, dry_run=True, on_request=calls) as client:
        outcome = await client.retag(SOURCE, TARGET)
        assert outcome == RetagOutcome(
            Outcome.WOULD_PROMOTE, SOURCE, TARGET, Digest(src), None, True
        )
        manifest = await client.get(SOURCE)
        assert await client.put(TARGET, manifest) == Digest(src)
    assert "PUT" not in calls.methods
    assert registry.head_digest(unique_repo, TARGET) is None


async def test_dry_run_with_overwrite_reports_the_would_be_replacement(
    registry_none: RunningRegistry, unique_repo: str
) -> None:
    src = registry_none.push_image(unique_repo, SOURCE, "docker-v2")
    other = registry_none.push_image(unique_repo, TARGET, "docker-v2")
    client = make_client(registry_none, unique_repo, dry_run=True, overwrite_target=True)
    async with client:
        outcome = await client.retag(SOURCE, TARGET)
    assert (outcome.outcome, outcome.source_digest) == (Outcome.WOULD_PROMOTE, Digest(src))
    assert outcome.previous_target_digest == Digest(other)
    assert registry_none.head_digest(unique_repo, TARGET) == other


# -- auth ---------------------------------------------------------------------------------


async def test_check_push_access_passes_for_a_writer(
    registry: RunningRegistry, unique_repo: str
) -> None:
    async with make_client(registry, unique_repo) as client:
        await client.check_push_access()
        assert client.request_count <= 3


async def test_wrong_password_is_one_clear_auth_error(
    authed_registry: RunningRegistry, unique_repo: str
) -> None:
    authed_registry.push_image(unique_repo, SOURCE, "docker-v2")
    wrong = "not-the-password-42"
    async with make_client(authed_registry, unique_repo, password=wrong) as client:
        with pytest.raises(RegistryAuthError, match="bad credentials") as info:
            await client.check_push_access()
        assert client.request_count == 2  # challenge + one retry (or token request): no storm
        with pytest.raises(RegistryAuthError, match="bad credentials"):
            await client.retag(SOURCE, TARGET)
        assert client.request_count <= 4  # Basic: sent preemptively now, so even fewer
    assert wrong not in str(info.value) + repr(info.value) + repr(client)
    if authed_registry.token_server is not None:
        assert authed_registry.token_server.requests == 2


async def test_pull_only_token_cannot_push(
    registry_token: RunningRegistry, unique_repo: str
) -> None:
    registry_token.push_image(unique_repo, SOURCE, "docker-v2")
    async with make_client(registry_token, unique_repo, reader=True) as client:
        with pytest.raises(RegistryAuthError, match="lack write access") as info:
            await client.check_push_access()
        assert "pull" in str(info.value)
        with pytest.raises(RegistryAuthError, match="lack write access"):
            await client.retag(SOURCE, TARGET)
    assert registry_token.head_digest(unique_repo, TARGET) is None
    assert registry_token.token_server is not None
    assert registry_token.token_server.requests == 2  # startup token + one refetch at the PUT


async def test_token_endpoint_403_means_no_write_access(
    registry_token: RunningRegistry, unique_repo: str
) -> None:
    assert registry_token.token_server is not None
    registry_token.token_server.deny_insufficient = True  # GHCR style
    async with make_client(registry_token, unique_repo, reader=True) as client:
        with pytest.raises(RegistryAuthError, match="credentials lack write access"):
            await client.check_push_access()


async def test_expired_token_is_refetched_once(
    registry_token: RunningRegistry, unique_repo: str
) -> None:
    assert registry_token.token_server is not None
    src = registry_token.push_image(unique_repo, SOURCE, "docker-v2")
    registry_token.token_server.issue_expired = 1
    async with make_client(registry_token, unique_repo) as client:
        outcome = await client.retag(SOURCE, TARGET)
    assert outcome.outcome is Outcome.PROMOTED
    assert registry_token.token_server.requests == 2
    assert registry_token.head_digest(unique_repo, TARGET) == src


async def test_docker_hub_style_token_answer_is_cached(
    registry_token: RunningRegistry, unique_repo: str
) -> None:
    server = registry_token.token_server
    assert server is not None
    server.token_only, server.omit_expires_in = True, True  # `token` only, default 60 s
    registry_token.push_image(unique_repo, SOURCE, "docker-v2")
    async with make_client(registry_token, unique_repo) as client:
        assert (await client.retag(SOURCE, TARGET)).outcome is Outcome.PROMOTED
        assert (await client.retag(SOURCE, TARGET)).outcome is Outcome.ALREADY_PROMOTED
    assert server.requests == 1


@pytest.mark.usefixtures("structlog_via_stdlib")
async def test_secrets_stay_out_of_errors_reprs_and_logs(
    registry_token: RunningRegistry,
    unique_repo: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    registry_token.push_image(unique_repo, SOURCE, "docker-v2")
    transport = RecordingTransport()
    texts: list[str] = []
    with FaultProxy(registry_token.url) as proxy:
        proxy.script(FaultResponse(503, {}, b"busy"))  # makes stamina log a retry
        reader = make_client(
            registry_token, unique_repo, url=proxy.url, reader=True, transport=transport
        )
        async with reader:
            with pytest.raises(RegistryAuthError) as info:
                await reader.retag(SOURCE, TARGET)
            texts += [str(info.value), repr(info.value), repr(reader)]
    async with make_client(registry_token, unique_repo, password="Wr0ng-pass-xyz") as wrong:
        with pytest.raises(RegistryAuthError) as info:
            await wrong.check_push_access()
        texts += [str(info.value), repr(info.value), repr(wrong)]
    tokens = {
        r.headers["authorization"].split()[1]
        for r in transport.requests
        if r.headers.get("authorization", "").startswith("Bearer ")
    }
    assert tokens
    out = capsys.readouterr()
    haystack = "\n".join([*texts, caplog.text, out.out, out.err])
    assert "503" in haystack  # the retried request's logs were captured
    for secret in (*tokens, registry_token.reader_password, "Wr0ng-pass-xyz"):
        assert secret not in haystack


# -- faults -------------------------------------------------------------------------------


async def test_429_and_503_are_retried_honouring_retry_after(
    registry_basic: RunningRegistry, unique_repo: str
) -> None:
    src = registry_basic.push_image(unique_repo, SOURCE, "oci-index")
    limited = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
    with FaultProxy(registry_basic.url) as proxy:
        proxy.script(
            FaultResponse(429, {"Retry-After": "1", "Content-Type": "application/json"}, limited),
            FaultResponse(503, {}, b"upstream busy"),
            FaultResponse(503, {"Retry-After": "0"}, b""),
        )
        async with make_client(registry_basic, unique_repo, url=proxy.url) as client:
            outcome = await client.retag(SOURCE, TARGET)
        log = list(proxy.log)
    assert outcome.outcome is Outcome.PROMOTED
    assert [r.status for r in log[:4]] == [429, 503, 503, 401]
    waited = log[1].at - log[0].at
    assert 1.0 <= waited < 2.0, waited  # Retry-After: 1, not the 10 ms backoff
    assert log[3].at - log[1].at < 0.5
    assert registry_basic.skopeo_digest(unique_repo, TARGET) == src


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [
        ({"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600"}, 21600.0),
        ({"Retry-After": "120"}, 120.0),
    ],
)
async def test_a_wait_beyond_the_deadline_fails_at_once(
    registry_none: RunningRegistry,
    unique_repo: str,
    headers: dict[str, str],
    retry_after: float,
) -> None:
    body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull limit"}]}'
    with FaultProxy(registry_none.url) as proxy:
        proxy.script(FaultResponse(429, {"Content-Type": "application/json", **headers}, body))
        async with make_client(registry_none, unique_repo, url=proxy.url) as client:
            start = trio.current_time()
            with pytest.raises(RegistryUnavailable) as info:
                await client.get(SOURCE)  # a GET: a HEAD's error has no body to parse
            assert trio.current_time() - start < 0.5
            assert client.request_count == 1  # (the proxy logs after answering: racy to read)
    assert info.value.retry_after == retry_after
    assert (info.value.status, info.value.code, info.value.tag) == (429, "TOOMANYREQUESTS", SOURCE)


async def test_a_hanging_registry_is_bounded_by_timeout_and_deadline(
    registry_none: RunningRegistry, unique_repo: str
) -> None:
    with FaultProxy(registry_none.url) as proxy:
        proxy.set_hang(True)
        client = make_client(registry_none, unique_repo, url=proxy.url, timeout=0.2, deadline=0.7)
        async with client:
            start = trio.current_time()
            with pytest.raises(RegistryUnavailable, match="deadline") as info:
                await client.retag(SOURCE, TARGET)
            elapsed = trio.current_time() - start
        attempts = len(proxy.log)
    assert 0.7 <= elapsed < 1.5, elapsed
    assert attempts >= 2  # each attempt was cut at 0.2 s and retried
    assert "no answer within 0.2s" in str(info.value)


async def test_a_request_timeout_is_retried(
    registry_none: RunningRegistry, unique_repo: str
) -> None:
    src = registry_none.push_image(unique_repo, SOURCE, "docker-v2")
    with FaultProxy(registry_none.url) as proxy:
        proxy.set_hang(True)

        def unhang_after_the_first_timeout(method: str, status: str) -> None:
            if status == "error":
                proxy.set_hang(False)

        client = make_client(
            registry_none, unique_repo, url=proxy.url, timeout=0.2,
            on_request=unhang_after_the_first_timeout,
        )  # fmt: skip
        async with client:
            start = trio.current_time()
            assert await client.digest(SOURCE) == Digest(src)
            elapsed = trio.current_time() - start
            assert client.request_count == 2
        assert proxy.log[0].status is None
    assert 0.2 <= elapsed < 2.0


async def test_plain_text_4xx_is_a_request_error_without_retry(
    registry_none: RunningRegistry, unique_repo: str
) -> None:
    with FaultProxy(registry_none.url) as proxy:
        proxy.script(FaultResponse(400, {"Content-Type": "text/plain"}, b"bad request line\n"))
        async with make_client(registry_none, unique_repo, url=proxy.url) as client:
            with pytest.raises(RegistryRequestError) as info:
                await client.get(SOURCE)
            assert client.request_count == 1
    assert str(info.value) == f"get {SOURCE}: bad request line [HTTP 400]"


async def test_lying_digest_header_is_a_typed_error(
    registry_none: RunningRegistry, unique_repo: str
) -> None:
    registry_none.push_image(unique_repo, SOURCE, "docker-v2")
    body, media_type = registry_none.manifest(unique_repo, SOURCE)
    lie = "sha256:" + "0" * 64
    with FaultProxy(registry_none.url) as proxy:
        proxy.script(
            FaultResponse(200, {"Content-Type": media_type, "Docker-Content-Digest": lie}, body)
        )
        async with make_client(registry_none, unique_repo, url=proxy.url) as client:
            with pytest.raises(DigestMismatch, match=lie) as info:
                await client.get(SOURCE)
    assert info.value.tag == SOURCE


async def test_put_403_reads_as_immutable_or_no_permission(
    registry_none: RunningRegistry, unique_repo: str
) -> None:
    registry_none.push_image(unique_repo, SOURCE, "docker-v2")
    denied = b'{"errors":[{"code":"DENIED","message":"tag is immutable"}]}'
    with FaultProxy(registry_none.url) as proxy:
        async with make_client(registry_none, unique_repo, url=proxy.url) as client:
            manifest = await client.get(SOURCE)
            proxy.script(FaultResponse(403, {"Content-Type": "application/json"}, denied))
            with pytest.raises(RegistryRequestError, match="tag immutable or no write") as info:
                await client.put(TARGET, manifest)
            assert client.request_count == 2
    assert (info.value.status, info.value.code) == (403, "DENIED")
    assert registry_none.head_digest(unique_repo, TARGET) is None


async def test_put_sends_the_exact_bytes(registry_none: RunningRegistry, unique_repo: str) -> None:
    registry_none.push_image(unique_repo, SOURCE, "docker-list")
    body, media_type = registry_none.manifest(unique_repo, SOURCE)
    async with make_client(registry_none, unique_repo) as client:
        manifest = await client.get(SOURCE)
        assert manifest == Manifest.from_bytes(body, media_type)
        assert await client.put(TARGET, manifest) == manifest.digest
    assert registry_none.manifest(unique_repo, TARGET) == (body, media_type)


async def test_invalid_tags_are_refused_locally(registry_none: RunningRegistry) -> None:
    calls: list[tuple[str, str]] = []
    record: Callable[[str, str], None] = lambda m, s: calls.append((m, s))  # noqa: E731
    async with make_client(registry_none, "test/x", on_request=record) as client:
        with pytest.raises(ValueError, match="invalid tag"):
            await client.retag("release-../../x", TARGET)
    assert calls == []

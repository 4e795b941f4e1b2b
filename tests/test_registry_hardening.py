"""Hostile and misbehaving registries: typed errors, bounded waits, no secret echoed back.

All on trio's MockClock (autojump) over an in-memory registry (`testing.registry_fake`), so
waits are measured in simulated time and a test that "waits a minute" takes milliseconds.
"""

from __future__ import annotations

import base64
import collections
import gzip
import json
import logging
import pickle
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from gopher_updater.manifest import Outcome
from gopher_updater.registry_auth import RegistryAuth
from gopher_updater.registry_body import MAX_MANIFEST_BYTES
from gopher_updater.registry_errors import (
    MAX_ADVERTISED_WAIT,
    RegistryAuthError,
    RegistryError,
    RegistryRequestError,
    RegistryUnavailable,
    parse_ratelimit,
    parse_registry_error,
    parse_retry_after,
)
from gopher_updater.registry_retry import RETRY_AFTER_CEILING, RETRY_AFTER_FLOOR
from gopher_updater.testing.registry_fake import (
    OCI_MANIFEST,
    PASSWORD,
    SOURCE,
    TARGET,
    FakeRegistry,
    canned,
)

DEEP = b'{"errors":' + b"[" * 2000 + b"]" * 2000 + b"}"
TOO_MANY = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


# -- 9.4: no answer crashes the client -----------------------------------------------------


def test_parsers_survive_the_inputs_that_crashed_them() -> None:
    assert parse_registry_error(DEEP)[0] is None  # was RecursionError
    assert parse_ratelimit("0;w=nan") == (0, None)  # was ValueError downstream
    assert parse_ratelimit("0;w=-5") == (0, None)
    assert parse_ratelimit("9" * 5000) is None
    assert parse_retry_after("9" * 60) == MAX_ADVERTISED_WAIT  # clamped, finite
    assert parse_retry_after("9" * 400) is None  # oversized: as if absent
    assert parse_retry_after("inf") is None
    assert parse_retry_after("Mon, 01 Jan 0001 00:00:00 GMT") == 0.0


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (500, {"Content-Type": "application/json"}, DEEP),
        (429, {"ratelimit-remaining": "0;w=nan"}, TOO_MANY),
        (429, {"ratelimit-remaining": "0;w=-5"}, TOO_MANY),
        (429, {"Retry-After": "1e999"}, TOO_MANY),
        (400, {"Content-Type": "application/json"}, b'{"errors":[{"code":5,"message":[1]}]}'),
    ],
)
async def test_hostile_error_answers_are_typed_errors(
    autojump_clock: trio.testing.MockClock, status: int, headers: dict[str, str], body: bytes
) -> None:
    fake = FakeRegistry(always=canned(status, headers, body))
    async with fake.client() as client:
        with pytest.raises(RegistryError) as info:
            await client.get(SOURCE)
    assert info.value.status == status
    assert type(info.value) is (RegistryRequestError if status == 400 else RegistryUnavailable)


def token_flow(answer: dict[str, Any]) -> FakeRegistry:
    """A Bearer registry whose token endpoint gives `answer` (200, JSON)."""

    def bearer(request: httpx.Request) -> httpx.Response | None:
        if request.url.host == "auth.test":
            return httpx.Response(200, content=json.dumps(answer).encode())
        if not request.headers.get("authorization", "").startswith("Bearer "):
            realm = 'Bearer realm="https://auth.test/token",service="registry.test"'
            return httpx.Response(401, headers={"WWW-Authenticate": realm})
        return None

    return FakeRegistry(always=bearer)


async def test_a_400_digit_expires_in_is_clamped_not_a_crash(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = token_flow({"token": "tok-" + "a" * 20, "expires_in": 10**400})
    async with fake.client() as client:
        await client.check_push_access()  # was OverflowError
        assert (await client.retag(SOURCE, TARGET)).outcome is Outcome.PROMOTED
    token_requests = [r for r in fake.requests if r.url.host == "auth.test"]
    assert len(token_requests) == 1  # cached: the clamped expiry is a usable one


@pytest.mark.parametrize("answer", [{"token": ["x"]}, {"token": "a\nb"}, {}, {"token": ""}])
async def test_a_token_answer_without_a_usable_token_is_an_auth_error(
    autojump_clock: trio.testing.MockClock, answer: dict[str, Any]
) -> None:
    async with token_flow(answer).client() as client:
        with pytest.raises(RegistryAuthError, match="without a token"):
            await client.check_push_access()


async def test_an_oversized_manifest_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    big = b"{" + b" " * MAX_MANIFEST_BYTES + b"}"
    fake = FakeRegistry(always=canned(200, {"Content-Type": OCI_MANIFEST}, big))
    async with fake.client() as client:
        with pytest.raises(RegistryRequestError, match="larger than 4194304 bytes"):
            await client.get(SOURCE)


async def test_a_gzip_bomb_is_refused_before_it_inflates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bomb = gzip.compress(b"{" + b" " * (64 * MAX_MANIFEST_BYTES) + b"}")
    assert len(bomb) < MAX_MANIFEST_BYTES
    headers = {"Content-Type": OCI_MANIFEST, "Content-Encoding": "gzip"}
    fake = FakeRegistry(always=canned(200, headers, bomb))
    async with fake.client() as client:
        with pytest.raises(RegistryRequestError, match="larger than"):
            await client.get(SOURCE)
    assert fake.requests[0].headers["accept-encoding"] == "identity"


async def test_a_gzipped_manifest_is_still_read_exactly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeRegistry()
    body = fake.tags[SOURCE]
    headers = {"Content-Type": OCI_MANIFEST, "Content-Encoding": "gzip"}
    fake.faults.append(canned(200, headers, gzip.compress(body)))
    async with fake.client() as client:
        assert (await client.get(SOURCE)).content == body


async def test_an_unusable_digest_header_falls_back_to_hashing_the_bytes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeRegistry(canned(200, {"Docker-Content-Digest": "sha256:" + "z" * 64}))
    async with fake.client() as client:
        digest = await client.digest(SOURCE)
    assert digest is not None
    assert [r.method for r in fake.requests] == ["HEAD", "GET"]
    assert digest.value == fake.answer(fake.requests[1]).headers["docker-content-digest"]


# -- 9.5 / 13.5: bounded request rates, Retry-After honoured ----------------------------------


def per_second(times: list[float]) -> int:
    """The most requests seen in any one simulated second (buckets from the first request)."""
    return max(collections.Counter(int(t - times[0]) for t in times).values())


@pytest.mark.parametrize(
    "retry_after", ["0", "-5", "0.0001", "Wed, 01 Jan 2020 00:00:00 GMT", "nonsense"]
)
async def test_retry_after_zero_forever_cannot_make_us_spin(
    autojump_clock: trio.testing.MockClock, retry_after: str
) -> None:
    fake = FakeRegistry(always=canned(429, {"Retry-After": retry_after}, TOO_MANY))
    async with fake.client(deadline=30.0) as client:
        with pytest.raises(RegistryUnavailable, match="deadline"):
            await client.digest(SOURCE)
    assert len(fake.times) >= 10  # it did keep trying for the whole deadline
    assert per_second(fake.times) <= 2 if retry_after != "nonsense" else 5
    gaps = [b - a for a, b in zip(fake.times, fake.times[1:], strict=False)]
    if retry_after != "nonsense":  # garbage means "no Retry-After": the backoff applies
        assert min(gaps) >= RETRY_AFTER_FLOOR


async def test_a_retry_after_beyond_the_ceiling_gives_up_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    wait = str(int(RETRY_AFTER_CEILING) + 1)
    fake = FakeRegistry(always=canned(429, {"Retry-After": wait}, TOO_MANY))
    start = trio.current_time()
    async with fake.client(deadline=600.0) as client:
        with pytest.raises(RegistryUnavailable) as info:
            await client.digest(SOURCE)
    assert trio.current_time() - start < 1.0
    assert len(fake.times) == 1
    assert info.value.retry_after == float(wait)


async def test_two_429_and_two_503_at_the_halt_take_under_three_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limited = canned(429, {"Retry-After": "1"}, TOO_MANY)
    busy = canned(503, {}, b"upstream busy")
    fake = FakeRegistry(limited, limited, busy, busy)
    start = trio.current_time()
    async with fake.client() as client:
        outcome = await client.retag(SOURCE, TARGET)
    elapsed = trio.current_time() - start
    assert outcome.outcome is Outcome.PROMOTED
    assert elapsed <= 3.0, elapsed
    t = fake.times
    assert t[1] - t[0] >= 1.0 and t[2] - t[1] >= 1.0  # Retry-After: 1, honoured each time
    assert t[4] - t[2] < 1.0  # the two 503s: a short backoff, not the 3rd and 4th failure's


# -- 9.7: nothing a server echoes back leaks a credential ------------------------------------


def echoing(request: httpx.Request) -> httpx.Response | None:
    """A registry that asks for Basic auth, then echoes the Authorization header it got."""
    header = request.headers.get("authorization")
    if header is None:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
    body = {"errors": [{"code": "DENIED", "message": f"bad header Authorization: {header}"}]}
    return httpx.Response(400, json=body)


@pytest.mark.usefixtures("structlog_via_stdlib")
@pytest.mark.parametrize("operation", ["get", "check_push_access", "connection"])
async def test_an_echoed_authorization_header_never_reaches_errors_or_logs(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    operation: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeRegistry(always=echoing)
    if operation == "connection":

        def refuse(request: httpx.Request) -> httpx.Response | None:
            if "authorization" not in request.headers:
                return echoing(request)
            raise httpx.ConnectError(f"refused: {request.headers['authorization']}")

        fake.always = refuse
    async with fake.client(deadline=3.0) as client:
        with pytest.raises(RegistryError) as info:
            if operation == "check_push_access":
                await client.check_push_access()
            else:
                await client.get(SOURCE)
    basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    sent = {r.headers.get("authorization") for r in fake.requests} - {None}
    assert sent == {f"Basic {basic}"}  # the server really did get (and echo) it
    out = capsys.readouterr()
    haystack = "\n".join([str(info.value), repr(info.value), caplog.text, out.out, out.err])
    assert "Authorization" in haystack or "refused" in haystack
    for secret in (basic, PASSWORD):
        assert secret not in haystack


def test_unknown_tokens_and_jwts_are_redacted_too() -> None:
    auth = RegistryAuth(user="alice", password=PASSWORD, repository="org/node")
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    text = auth.redact(f"got Bearer opaque-1234 and {jwt} and password={PASSWORD[::-1]}")
    for secret in ("opaque-1234", jwt, PASSWORD[::-1]):
        assert secret not in text
    assert "Bearer" in text
    for own_words in ("registry sent a Bearer challenge without a usable realm",
                      'challenge was Basic realm="Registry Realm"'):  # fmt: skip
        assert auth.redact(own_words) == own_words


# -- 10.5: errors are values -----------------------------------------------------------------


def test_errors_are_immutable_and_retryable_by_class() -> None:
    err = RegistryUnavailable("busy", status=503, retry_after=2.0)
    with pytest.raises(AttributeError):
        err.status = 200  # type: ignore[misc]
    with pytest.raises(AttributeError):
        err._context = err.context  # type: ignore[misc]
    assert RegistryUnavailable.retryable and not RegistryRequestError.retryable
    filled = err.with_context("retag", "t1")
    assert (filled.operation, filled.tag, err.operation) == ("retag", "t1", None)
    assert type(filled) is RegistryUnavailable and filled.retry_after == 2.0
    again = pickle.loads(pickle.dumps(filled))
    assert (type(again), str(again)) == (RegistryUnavailable, str(filled))
    err.add_note("notes still work (hypothesis and trio add them)")

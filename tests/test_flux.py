"""The Flux Receiver nudger: parsing, signing, schedule, retries, dedupe, secrecy.

Timing tests run on trio's MockClock (`autojump_clock`): the clock jumps whenever every task
waits, so a 2-minute retry series takes milliseconds and its instants are exact. Receivers
are an httpx.MockTransport scripted per URL; the real-HTTP tests are in test_fluxsim.py.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import io
import itertools
import json
import logging
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import pytest
import structlog
import trio
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from gopher_updater import logs
from gopher_updater.flux import Nudger
from gopher_updater.flux_receiver import (
    MAX_URL_LENGTH,
    RETRYABLE,
    ReceiverConfigError,
    classify,
    parse_receivers,
    request_headers,
    signature,
    token_warning,
)
from gopher_updater.flux_status import (
    OUTCOMES,
    FluxMetrics,
    NudgeRequest,
    NudgeSchedule,
    event_body,
)

TOKEN = b"s3cr3t-token"
SECRET_PATH = "/hook/a3ed2b2119b935be37ce1fcd2d8e0563c56625486496d7324f925e5fd109d13f"
URL_A = "http://webhook-receiver.flux-system.svc.cluster.local" + SECRET_PATH
URL_B = "https://flux.example.com:8443/hook/" + "b" * 64
ORIGIN_A = "http://webhook-receiver.flux-system.svc.cluster.local"
ORIGIN_B = "https://flux.example.com:8443"
REQUEST = NudgeRequest(
    chain_id="mychain-1",
    plan="v1.2.3",
    height=123456,
    repository="me/node",
    target_tag="mainnet-v1.2.3",
    digest="sha256:" + "ab" * 32,
)
#: The issue's schedule: at once, then about +10, +30, +60 and +120 s.
ISSUE_OFFSETS = (0.0, 10.0, 30.0, 60.0, 120.0)

Answer = int | str  # a status code, "hang" (never answers) or "refuse" (connection error)


# --- signing and the body: the reference's worked examples ----------------------------------

# flux-receiver.md §2: key s3cr3t-token over these exact bytes.
WORKED_BODY = (
    b'{"chain_id":"mychain-1","upgrade":"v1.2.3","height":"123456",'
    b'"image":"ghcr.io/acme/node:mainnet-v1.2.3"}'
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (WORKED_BODY, "sha256=4bcdf0e20c7ff8f4fdd00e69b13be1e0754fdbbedd90ac04a30f3f12645547d8"),
        (b"", "sha256=772e5585aafc95674a2160e6f0b522a470d3671e3ea6c154445140032eb28ef9"),
        (b"{}", "sha256=1f3fa6fcd79f063072a7fe10ecf17040e4259cd1501f27c7a21d81bbf24af23a"),
    ],
    ids=["worked-example", "empty", "empty-object"],
)
def test_signature_matches_the_references_worked_examples(body: bytes, expected: str) -> None:
    assert len(WORKED_BODY) == 104
    assert signature(TOKEN, body) == expected


def test_signed_requests_carry_json_content_type_and_the_signature_of_the_exact_body() -> None:
    (receiver,) = parse_receivers(URL_A, TOKEN)
    body = event_body(REQUEST, 1_700_000_000)
    headers = request_headers(receiver, body)
    assert headers["Content-Type"] == "application/json"
    alg, _, digest = headers["X-Signature"].partition("=")
    assert alg == "sha256"
    assert hmac.compare_digest(digest, hmac.new(TOKEN, body, hashlib.sha256).hexdigest())
    (unsigned,) = parse_receivers(URL_A, None)
    assert "X-Signature" not in request_headers(unsigned, body)


def test_a_token_is_used_byte_for_byte() -> None:
    (plain,) = parse_receivers(URL_A, TOKEN)
    (newline,) = parse_receivers(URL_A, TOKEN + b"\n")
    assert request_headers(plain, b"{}") != request_headers(newline, b"{}")
    assert token_warning(TOKEN) is None
    warning = token_warning(TOKEN + b"\n")
    assert warning is not None and "newline" in warning
    assert TOKEN.decode() not in warning


def test_event_body_is_the_issues_event() -> None:
    body = event_body(REQUEST, 1_700_000_123)
    assert json.loads(body) == {
        "type": "promoted",
        "chain_id": REQUEST.chain_id,
        "plan": REQUEST.plan,
        "height": REQUEST.height,
        "repository": REQUEST.repository,
        "target_tag": REQUEST.target_tag,
        "digest": REQUEST.digest,
        "at": 1_700_000_123,
    }
    assert b" " not in body  # compact: the bytes must not depend on a library's defaults


@given(st.text(), st.text(), st.integers(min_value=0, max_value=2**63 - 1))
def test_event_body_round_trips_any_plan_name_as_ascii(plan: str, chain: str, h: int) -> None:
    request = attrs.evolve(REQUEST, plan=plan, chain_id=chain, height=h)
    body = event_body(request, 1)
    assert body.isascii()
    decoded = json.loads(body)
    assert (decoded["plan"], decoded["chain_id"], decoded["height"]) == (plan, chain, h)


# --- configuration: URLs and token ----------------------------------------------------------


def test_receivers_parse_in_order_with_origins_and_shared_token() -> None:
    a, b = parse_receivers(f" {URL_A} ,{URL_B}", TOKEN)
    assert (a.origin, a.index, b.origin, b.index) == (ORIGIN_A, 1, ORIGIN_B, 2)
    assert a.url.reveal() == URL_A and b.url.reveal() == URL_B
    assert a.signed and b.signed
    assert parse_receivers("  ", TOKEN) == ()
    (ipv6,) = parse_receivers("http://[::1]:9292/hook/x", None)
    assert ipv6.origin == "http://[::1]:9292" and not ipv6.signed


@pytest.mark.parametrize(
    ("urls", "reason"),
    [
        ("ftp://flux.example.com/hook/secretpath", "scheme"),
        ("http:///hook/secretpath", "no host"),
        ("http://user:pw@flux.example.com/hook/secretpath", "user:password@"),
        ("http://flux.example.com:0/hook/secretpath", "port"),
        ("http://flux.example.com:65536/hook/secretpath", "port"),
        ("http://flux.example.com:http/hook/secretpath", "port"),
        ("http://flux.example.com", "no webhook path"),
        ("http://flux.example.com/", "no webhook path"),
        ("http://flux.example.com/hook/secretpath?x=1", "query"),
        ("http://flux.example.com/hook/secretpath#frag", "fragment"),
        ("http://flux.example.com/hook/secret path", "spaces"),
        ("http://flux.example.com/hook/" + "s" * MAX_URL_LENGTH, "longer"),
        (f"{URL_A},{URL_A}", "twice"),
        (f"{URL_A},,{URL_B}", "empty"),
    ],
)
def test_bad_receiver_urls_are_refused_without_showing_the_path(urls: str, reason: str) -> None:
    with pytest.raises(ReceiverConfigError) as info:
        parse_receivers(urls, TOKEN)
    message = str(info.value)
    assert reason in message
    for shown in (message, repr(info.value)):
        assert "secret" not in shown and SECRET_PATH not in shown and "pw" not in shown


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ReceiverConfigError, match="token"):
        parse_receivers(URL_A, b"")


def test_receiver_values_print_only_their_origin() -> None:
    (receiver,) = parse_receivers(URL_A, TOKEN)
    for shown in (repr(receiver), str(receiver), repr(receiver.url), str(receiver.url)):
        assert SECRET_PATH not in shown and TOKEN.decode() not in shown
    assert str(receiver.url) == ORIGIN_A


@pytest.mark.fuzz
@given(st.text(max_size=300), st.none() | st.binary(min_size=1, max_size=64))
def test_fuzz_parse_receivers_accepts_or_refuses_without_leaking(
    urls: str, token: bytes | None
) -> None:
    try:
        receivers = parse_receivers(urls, token)
    except ReceiverConfigError as exc:
        # The message is built from fixed words and the origin: no path, query or userinfo.
        for part in urls.split(","):
            path = part.strip().partition("//")[2].partition("/")[2]
            if len(path) > 8:
                assert path not in str(exc)
        return
    for r in receivers:
        assert r.origin.startswith(("http://", "https://"))
        assert r.url.reveal() in urls
        assert r.url.reveal()[len(r.origin) :].startswith("/")


@given(st.integers(min_value=100, max_value=599))
def test_classify_follows_the_references_response_table(status: int) -> None:
    verdict = classify(status)
    if 200 <= status <= 299:
        assert verdict == "accepted"
    elif status in RETRYABLE or status >= 500:
        assert verdict == "retry"
    else:
        assert verdict == "rejected"
    assert {classify(400), classify(413)} == {"rejected"}
    assert {classify(404), classify(408), classify(429), classify(503), classify(None)} == {"retry"}


# --- the Nudger on a mock clock ------------------------------------------------------------


@attrs.define
class Call:
    at: float
    url: str
    headers: httpx.Headers
    body: bytes


@attrs.define
class ScriptedReceivers:
    """Answers per URL from a script (the last answer repeats); records every call."""

    scripts: dict[str, list[Answer]]
    calls: list[Call] = attrs.Factory(list)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.calls.append(Call(trio.current_time(), url, request.headers, request.content))
        script = self.scripts[url]
        answer = script.pop(0) if len(script) > 1 else script[0]
        if answer == "hang":
            await trio.sleep_forever()
        if answer == "refuse":
            raise httpx.ConnectError(f"cannot reach {url}")  # httpx's messages quote URLs
        assert isinstance(answer, int)
        return httpx.Response(answer)

    def times(self, url: str) -> list[float]:
        return [c.at for c in self.calls if c.url == url]


@attrs.define
class Rig:
    nudger: Nudger
    hooks: ScriptedReceivers
    registry: CollectorRegistry
    accepted: list[tuple[NudgeRequest, float]]

    def count(self, outcome: str) -> float:
        value = self.registry.get_sample_value(
            "gopher_updater_flux_nudges_total", {"outcome": outcome}
        )
        assert value is not None
        return value


def make_rig(
    scripts: dict[str, list[Answer]], *, dry_run: bool = False, queue_size: int = 16
) -> Rig:
    hooks = ScriptedReceivers(scripts)
    registry = CollectorRegistry()
    accepted: list[tuple[NudgeRequest, float]] = []
    nudger = Nudger(
        parse_receivers(",".join(scripts), TOKEN),
        metrics=FluxMetrics(registry),
        dry_run=dry_run,
        on_accepted=lambda req, at: accepted.append((req, at)),
        transport=httpx.MockTransport(hooks.handle),
        queue_size=queue_size,
    )
    return Rig(nudger, hooks, registry, accepted)


async def run_for(rig: Rig, seconds: float, *requests: tuple[float, NudgeRequest]) -> float:
    """Run the nudger; submit each request at its offset; return the start time."""
    async with trio.open_nursery() as nursery:
        await nursery.start(rig.nudger.run)
        t0 = trio.current_time()
        for offset, request in requests:
            await trio.sleep_until(t0 + offset)
            assert rig.nudger.submit_nowait(request)
        await trio.sleep_until(t0 + seconds)
        nursery.cancel_scope.cancel()
    return t0


def test_the_default_schedule_is_the_issues() -> None:
    schedule = NudgeSchedule()
    assert schedule.offsets == ISSUE_OFFSETS
    assert (schedule.retry_initial, schedule.retry_budget) == (1.0, 120.0)


async def test_nudges_at_once_then_at_the_repeat_offsets(autojump_clock: trio.abc.Clock) -> None:
    rig = make_rig({URL_A: [200], URL_B: [204]})
    seen = REQUEST.height
    request = attrs.evolve(REQUEST, block_h_seen_at=None)
    t0 = await run_for(rig, 600, (0, request))
    for url in (URL_A, URL_B):
        assert [t - t0 for t in rig.hooks.times(url)] == pytest.approx(ISSUE_OFFSETS)
    bodies = {c.body for c in rig.hooks.calls}
    assert len(bodies) == 1  # serialised once, the same bytes every time
    assert json.loads(bodies.pop())["height"] == seen
    for call in rig.hooks.calls:
        assert call.headers["x-signature"] == signature(TOKEN, call.body)
        assert call.headers["content-type"] == "application/json"
    assert rig.count("accepted") == 2 * len(ISSUE_OFFSETS)
    assert len(rig.accepted) == 1 and rig.accepted[0][0] == request
    snap = rig.nudger.snapshot()
    assert snap.finished and snap.plan == REQUEST.plan
    assert [(r.receiver, r.outcome, r.accepted, r.finished) for r in snap.receivers] == [
        (ORIGIN_A, "accepted", len(ISSUE_OFFSETS), True),
        (ORIGIN_B, "accepted", len(ISSUE_OFFSETS), True),
    ]


async def test_delay_metric_runs_from_block_h_to_the_first_accepted_nudge(
    autojump_clock: trio.abc.Clock,
) -> None:
    rig = make_rig({URL_A: [503, 503, 200]})
    async with trio.open_nursery() as nursery:
        await nursery.start(rig.nudger.run)
        seen = trio.current_time()
        await trio.sleep(0.4)  # the retag takes a while after block H
        rig.nudger.submit_nowait(attrs.evolve(REQUEST, block_h_seen_at=seen))
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    first_ok = rig.hooks.times(URL_A)[2]
    delay = rig.registry.get_sample_value("gopher_updater_flux_nudge_delay_seconds")
    assert delay == pytest.approx(first_ok - seen)
    assert rig.nudger.snapshot().delay_seconds == pytest.approx(first_ok - seen)


async def test_retryable_answers_are_retried_after_1s_doubling(
    autojump_clock: trio.abc.Clock,
) -> None:
    rig = make_rig({URL_A: [503, 404, 429, "refuse", 200]})
    t0 = await run_for(rig, 29, (0, REQUEST))
    times = [t - t0 for t in rig.hooks.times(URL_A)]
    # The 200 comes at +15; the +10 send was overrun by those retries and is skipped.
    assert times == pytest.approx([0, 1, 3, 7, 15])
    assert rig.count("retry") == 4 and rig.count("accepted") == 1
    assert len(rig.accepted) == 1


async def test_a_send_gives_up_after_about_two_minutes(autojump_clock: trio.abc.Clock) -> None:
    rig = make_rig({URL_A: [503]})
    t0 = await run_for(rig, 2000, (0, REQUEST))
    times = [t - t0 for t in rig.hooks.times(URL_A)]
    first_send = [t for t in times if t < ISSUE_OFFSETS[-1]]
    gaps = [b - a for a, b in itertools.pairwise(first_send)]
    assert gaps[:6] == pytest.approx([1, 2, 4, 8, 16, 32])
    assert all(gap <= NudgeSchedule().retry_max for gap in gaps)
    # The first send gave up past +60: the next one is the +120 send, on time.
    assert next(t for t in times if t > first_send[-1]) == pytest.approx(ISSUE_OFFSETS[-1])
    snap = rig.nudger.snapshot()
    assert snap.finished and snap.receivers[0].outcome == "failed"
    assert rig.count("failed") >= 1 and rig.count("accepted") == 0
    assert not rig.accepted
    # Overrun offsets are skipped: a series never makes more sends than there are offsets.
    assert rig.count("failed") <= len(ISSUE_OFFSETS)


async def test_timeouts_bound_every_request_and_are_retried(
    autojump_clock: trio.abc.Clock,
) -> None:
    rig = make_rig({URL_A: ["hang", 200]})
    t0 = await run_for(rig, 5 + NudgeSchedule().request_timeout, (0, REQUEST))
    times = [t - t0 for t in rig.hooks.times(URL_A)]
    assert times == pytest.approx([0, NudgeSchedule().request_timeout + 1])
    assert rig.nudger.snapshot().receivers[0].outcome == "accepted"


async def test_a_400_ends_that_receivers_series_only(autojump_clock: trio.abc.Clock) -> None:
    rig = make_rig({URL_A: [400], URL_B: [200]})
    await run_for(rig, 600, (0, REQUEST))
    assert len(rig.hooks.times(URL_A)) == 1
    assert len(rig.hooks.times(URL_B)) == len(ISSUE_OFFSETS)
    assert rig.count("rejected") == 1
    a, b = rig.nudger.snapshot().receivers
    assert (a.outcome, a.status_code, a.attempts, a.finished) == ("rejected", 400, 1, True)
    assert b.outcome == "accepted"


async def test_a_413_is_a_configuration_error_too(autojump_clock: trio.abc.Clock) -> None:
    rig = make_rig({URL_A: [413]})
    await run_for(rig, 600, (0, REQUEST))
    assert len(rig.hooks.times(URL_A)) == 1 and rig.count("rejected") == 1


async def test_the_same_promotion_does_not_restart_its_series(
    autojump_clock: trio.abc.Clock,
) -> None:
    rig = make_rig({URL_A: [200]})
    again = attrs.evolve(REQUEST, block_h_seen_at=123.0, at=5)  # same promotion, re-derived
    await run_for(rig, 600, (0, REQUEST), (5, again), (15, REQUEST), (300, again))
    assert len(rig.hooks.times(URL_A)) == len(ISSUE_OFFSETS)
    assert len(rig.accepted) == 1


async def test_a_newer_plan_supersedes_and_an_older_one_is_ignored(
    autojump_clock: trio.abc.Clock,
) -> None:
    rig = make_rig({URL_A: [200]})
    newer = attrs.evolve(REQUEST, plan="v2.0.0", height=REQUEST.height + 1000)
    t0 = await run_for(rig, 600, (0, REQUEST), (15, newer), (20, REQUEST))
    by_plan: dict[str, list[float]] = {}
    for call in rig.hooks.calls:
        by_plan.setdefault(json.loads(call.body)["plan"], []).append(call.at - t0)
    assert by_plan[REQUEST.plan] == pytest.approx([0, 10])
    assert by_plan[newer.plan] == pytest.approx([15 + o for o in ISSUE_OFFSETS])
    assert [r.plan for r, _ in rig.accepted] == [REQUEST.plan, newer.plan]
    assert rig.nudger.snapshot().plan == newer.plan


async def test_dry_run_logs_and_sends_nothing(
    autojump_clock: trio.abc.Clock, debug_log: io.StringIO
) -> None:
    rig = make_rig({URL_A: [200], URL_B: [200]}, dry_run=True)
    await run_for(rig, 600, (0, REQUEST))
    assert rig.hooks.calls == []
    assert rig.count("dry_run") == 2 and rig.count("accepted") == 0
    assert not rig.accepted
    events = [json.loads(line) for line in debug_log.getvalue().splitlines()]
    would = [e for e in events if e["event"] == "flux_nudge_dry_run"]
    assert {e["receiver"] for e in would} == {ORIGIN_A, ORIGIN_B}
    assert json.loads(would[0]["body"])["target_tag"] == REQUEST.target_tag
    snap = rig.nudger.snapshot()
    assert snap.dry_run and {r.outcome for r in snap.receivers} == {"dry_run"}


async def test_submitting_never_blocks_and_a_full_queue_drops(debug_log: io.StringIO) -> None:
    rig = make_rig({URL_A: [200]}, queue_size=2)
    # The nudger is not running: nothing drains the queue.
    # A plain function: it cannot wait, so a full queue must answer False at once.
    assert not inspect.iscoroutinefunction(rig.nudger.submit_nowait)
    results = [rig.nudger.submit_nowait(attrs.evolve(REQUEST, height=h)) for h in (1, 2, 3)]
    assert results == [True, True, False]
    assert rig.nudger.snapshot().dropped == 1
    assert "flux_nudge_dropped" in debug_log.getvalue()


async def test_a_stopped_nudger_refuses_without_raising(autojump_clock: trio.abc.Clock) -> None:
    rig = make_rig({URL_A: [200]})
    await run_for(rig, 1)
    assert rig.nudger.submit_nowait(REQUEST) is False


async def test_a_failing_timeline_callback_does_not_stop_the_nudges(
    autojump_clock: trio.abc.Clock,
) -> None:
    hooks = ScriptedReceivers({URL_A: [200]})

    def broken(_req: NudgeRequest, _at: float) -> None:
        raise RuntimeError("timeline bug")

    nudger = Nudger(
        parse_receivers(URL_A, TOKEN),
        metrics=FluxMetrics(CollectorRegistry()),
        on_accepted=broken,
        transport=httpx.MockTransport(hooks.handle),
    )
    await run_for(Rig(nudger, hooks, CollectorRegistry(), []), 600, (0, REQUEST))
    assert len(hooks.calls) == len(ISSUE_OFFSETS)


# --- secrets -------------------------------------------------------------------------------


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """The daemon's own log configuration at LOG_LEVEL=debug, into a buffer."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    logs.configure(level="debug", fmt="json", stream=buffer)
    try:
        yield buffer
    finally:
        structlog.configure(**saved)
        root.handlers[:], root.level = handlers, level


async def test_no_path_or_token_in_logs_snapshots_metrics_or_errors(
    autojump_clock: trio.abc.Clock, debug_log: io.StringIO
) -> None:
    rig = make_rig({URL_A: ["refuse", 503, 200], URL_B: [400]})
    await run_for(rig, 600, (0, REQUEST))
    assert rig.count("accepted") > 0 and rig.count("rejected") == 1  # the paths were exercised
    snapshot = rig.nudger.snapshot()
    texts: list[Any] = [
        debug_log.getvalue(),
        repr(snapshot),
        json.dumps(snapshot.to_dict()),
        repr(rig.nudger),
        *(repr(r) for r in rig.nudger.receivers),
    ]
    from prometheus_client import generate_latest

    texts.append(generate_latest(rig.registry).decode())
    for bad in ("ftp://x/hook/secretpath", "http://u:secretpw@x/hook/secretpath"):
        with pytest.raises(ReceiverConfigError) as info:
            parse_receivers(bad, TOKEN)
        texts += [str(info.value), repr(info.value)]
    haystack = "\n".join(texts)
    assert "flux_nudge_rejected" in haystack and "ConnectError" in haystack
    assert ORIGIN_A in haystack
    for secret in (SECRET_PATH, URL_B.split(":8443")[1], TOKEN.decode(), "secretpath", "secretpw"):
        assert secret not in haystack


async def test_only_the_first_retry_of_a_send_is_a_warning(
    autojump_clock: trio.abc.Clock, debug_log: io.StringIO
) -> None:
    rig = make_rig({URL_A: [503, 503, 503, 200]})

    async def slow(request: httpx.Request) -> httpx.Response:
        await trio.sleep(0.5)  # an answer takes time, as on a real network
        return await rig.hooks.handle(request)

    rig.nudger = Nudger(
        parse_receivers(URL_A, TOKEN),
        metrics=FluxMetrics(CollectorRegistry()),
        transport=httpx.MockTransport(slow),
    )
    await run_for(rig, 9, (0, REQUEST))
    events = [json.loads(line) for line in debug_log.getvalue().splitlines()]
    levels = [e["level"] for e in events if e["event"] == "flux_nudge_retry"]
    assert levels == ["warning", "debug", "debug"]


def test_outcomes_are_pre_initialised(autojump_clock: trio.abc.Clock) -> None:
    registry = CollectorRegistry()
    FluxMetrics(registry)
    for outcome in OUTCOMES:
        assert registry.get_sample_value(
            "gopher_updater_flux_nudges_total", {"outcome": outcome}
        ) == pytest.approx(0)

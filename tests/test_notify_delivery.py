"""Delivery: both channels over real HTTP to the sink, retries, dedupe, filter, never in the way.

Timing guarantees are checked twice: with fake channels under trio's MockClock (exact, no
flakiness), and against a real sink that hangs, measuring what a caller and a concurrent
"poll" loop actually experience.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from types import TracebackType

import attrs
import pytest
import trio
from prometheus_client import CollectorRegistry, generate_latest

from gopher_updater.notifier import Channel, Notifier, NotifyMetrics, RetryPolicy
from gopher_updater.notify import EventType, NotifyEvent, parse_notify_events, render_text
from gopher_updater.notify_config import load_notify_settings
from gopher_updater.notify_webhook import Attempt
from gopher_updater.testing.notifysink import NotifySink

KEY = "hmac-k3y-s3cret"
SECRET = "p4th-s3cret-token"
FAST = RetryPolicy(first_delay=0.05, attempt_timeout=3.0)


def timeline() -> list[NotifyEvent]:
    base = NotifyEvent(EventType.SCHEDULED, "testchain-1", "v18", 1000, at=1_790_000_000.0)
    E, ev = EventType, attrs.evolve
    return [
        ev(base, eta_seconds=90_000.0, source_present=True),
        ev(base, type=E.REMINDER, eta_seconds=86_400.0, occurrence="24h"),
        ev(base, type=E.REMINDER, eta_seconds=3_600.0, occurrence="1h"),
        ev(base, type=E.HALTED),
        ev(base, type=E.PROMOTED, delay_seconds=0.2, digest="sha256:" + "ab" * 32),
        ev(base, type=E.NUDGED, delay_seconds=0.4),
        ev(base, type=E.NODE_UPGRADED),
        ev(base, type=E.RESUMED, halt_duration_seconds=252.0),
    ]


async def deliver(notifier: Notifier, events: Sequence[NotifyEvent]) -> None:
    """Run the notifier until every queued event is delivered or given up on."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(notifier.run)
            for e in events:
                notifier.notify_nowait(e)
            notifier.close()


def sample(registry: CollectorRegistry, channel: str, event: str, outcome: str) -> float:
    labels = {"channel": channel, "event": event, "outcome": outcome}
    return registry.get_sample_value("gopher_updater_notifications_total", labels) or 0.0


# ------------------------------------------------------------------ real HTTP


async def test_timeline_through_both_channels_in_order_once_and_signed() -> None:
    with NotifySink(key=KEY.encode()) as sink:
        settings = load_notify_settings(
            {
                "NOTIFY_WEBHOOK_URL": f"{sink.url}/hook/{SECRET}",
                "NOTIFY_WEBHOOK_TOKEN": KEY,
                "NOTIFY_URLS": sink.apprise_url("/apprise"),
            }
        )
        notifier = Notifier(settings.channels(3.0), policy=FAST)
        events = timeline()
        await deliver(notifier, [*events, *events])  # every event twice: sent once
    hooks, apprise = sink.posts_to(f"/hook/{SECRET}"), sink.posts_to("/apprise")
    assert [p.json()["type"] for p in hooks] == [e.type.value for e in events]
    assert [p.json()["occurrence"] for p in hooks][1:3] == ["24h", "1h"]
    assert all(p.signature_ok and p.header("content-type") == "application/json" for p in hooks)
    assert [p.json()["message"] for p in apprise] == [render_text(e) for e in events]
    assert all("testchain-1" in p.json()["title"] for p in apprise)
    assert notifier.status().deduplicated == len(events)


async def test_notify_events_filter() -> None:
    with NotifySink() as sink:
        notifier = Notifier(
            load_notify_settings({"NOTIFY_WEBHOOK_URL": sink.url}).channels(3.0),
            events=parse_notify_events("promoted, resumed"),
            policy=FAST,
        )
        await deliver(notifier, timeline())
    assert [p.json()["type"] for p in sink.posts] == ["promoted", "resumed"]
    assert notifier.status().filtered == len(timeline()) - 2


@pytest.mark.parametrize(
    ("status", "outcome", "posts"), [(500, "sent", 3), (429, "sent", 3), (404, "rejected", 1)]
)
async def test_webhook_retries_only_what_can_succeed(status: int, outcome: str, posts: int) -> None:
    registry = CollectorRegistry()
    with NotifySink() as sink:
        sink.fail_next(2, status=status)
        notifier = Notifier(
            load_notify_settings({"NOTIFY_WEBHOOK_URL": sink.url}).channels(3.0),
            metrics=NotifyMetrics(registry),
            policy=FAST,
        )
        await deliver(notifier, timeline()[3:4])
    assert [p.status for p in sink.posts][:2] == [status] * min(posts, 2)
    assert len(sink.posts) == posts
    assert sample(registry, "webhook", "halted", outcome) == 1
    assert sample(registry, "webhook", "halted", "retry") == posts - 1
    last = notifier.status().channels[0]
    assert last.last_outcome == outcome and (outcome == "sent") != notifier.status().failing


async def test_apprise_failure_is_retried_and_counted() -> None:
    registry = CollectorRegistry()
    with NotifySink() as sink:
        sink.fail_next(1)
        settings = load_notify_settings({"NOTIFY_URLS": sink.apprise_url("/a")})
        notifier = Notifier(settings.channels(3.0), metrics=NotifyMetrics(registry), policy=FAST)
        await deliver(notifier, timeline()[4:5])
    assert [p.status for p in sink.posts] == [500, 200]
    assert sample(registry, "apprise:json", "promoted", "retry") == 1
    assert sample(registry, "apprise:json", "promoted", "sent") == 1


async def test_exhausted_retries_show_in_status_without_the_url() -> None:
    with NotifySink() as sink:
        sink.fail_next(99)
        policy = RetryPolicy(attempts=3, first_delay=0.02, attempt_timeout=3.0)
        url = f"{sink.url}/hook/{SECRET}"
        notifier = Notifier(
            load_notify_settings({"NOTIFY_WEBHOOK_URL": url}).channels(3.0), policy=policy
        )
        await deliver(notifier, timeline()[:1])
    status = notifier.status()
    assert len(sink.posts) == 3 and status.failing
    channel = status.channels[0]
    assert (channel.last_outcome, channel.last_error) == ("failed", "HTTP 500")
    shown = json.dumps(status.to_json())
    assert SECRET not in shown and f"127.0.0.1:{sink.port}" in shown


async def test_a_hanging_sink_never_delays_callers_or_a_poll_loop() -> None:
    with NotifySink() as sink:
        sink.hang_all(30)
        settings = load_notify_settings(
            {"NOTIFY_WEBHOOK_URL": sink.url, "NOTIFY_URLS": sink.apprise_url("/a")}
        )
        policy = RetryPolicy(attempts=2, first_delay=0.1, attempt_timeout=0.5)
        notifier = Notifier(settings.channels(0.5), policy=policy)
        call_times: list[float] = []
        lateness: list[float] = []

        async def poll_loop() -> None:
            period = 0.05
            start = trio.current_time()
            for tick in range(1, 31):
                await trio.sleep_until(start + tick * period)
                lateness.append(trio.current_time() - (start + tick * period))
                if tick % 10 == 0:
                    before = time.perf_counter()
                    notifier.notify_nowait(timeline()[tick // 10])
                    call_times.append(time.perf_counter() - before)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(notifier.run)
                notifier.notify_nowait(timeline()[0])
                await poll_loop()
                assert sink.in_flight >= 1  # the sink really is hanging on us
                notifier.close()
    assert len(call_times) == 3 and max(call_times) < 0.05
    assert len(lateness) == 30 and max(lateness) < 0.25
    for channel in notifier.status().channels:
        assert channel.counts == (("sent", 0), ("retry", 4), ("failed", 4), *channel.counts[3:])
        assert channel.last_error == "timeout"


# ------------------------------------------------------------------ MockClock, fake channels


class FakeChannel:
    """A service whose behaviour the test scripts: fail N times, hang, or take a while."""

    kind = "fake"

    def __init__(self, name: str, *, fail: int = 0, hang: bool = False, delay: float = 0) -> None:
        self.name = self.target = name
        self._fail, self._hang, self._delay = fail, hang, delay
        self.tries: list[tuple[float, str]] = []
        self.delivered: list[str] = []

    async def __aenter__(self) -> FakeChannel:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def send(self, event: NotifyEvent) -> Attempt:
        self.tries.append((trio.current_time(), event.type.value))
        if self._hang:
            await trio.sleep_forever()
        await trio.sleep(self._delay * (len(self.tries) % 3))
        if len(self.tries) <= self._fail:
            return Attempt(ok=False, retryable=True, detail="HTTP 503")
        self.delivered.append(event.type.value)
        return Attempt(ok=True, retryable=False, detail="HTTP 200")


async def test_backoff_is_one_second_doubling_within_the_budget(autojump_clock: object) -> None:
    always = FakeChannel("down", fail=99)
    notifier = Notifier([always])
    await deliver(notifier, timeline()[:1])
    times = [t for t, _ in always.tries]
    assert [b - a for a, b in itertools.pairwise(times)] == [1, 2, 4, 8]
    assert times[-1] - times[0] <= 120
    short = FakeChannel("down", fail=99)
    await deliver(Notifier([short], policy=RetryPolicy(budget=3.5)), timeline()[:1])
    assert len(short.tries) == 3  # waits 1 + 2 fit in 3.5 s, a further 4 does not


async def test_order_kept_and_one_hanging_channel_delays_no_other(autojump_clock: object) -> None:
    slow, hung, fine = (
        FakeChannel("slow", delay=7),
        FakeChannel("hung", hang=True),
        FakeChannel("ok"),
    )
    notifier = Notifier([slow, hung, fine])
    events = timeline()
    ticks: list[float] = []

    async def poll_loop() -> None:
        for _ in range(100):
            await trio.sleep(1)
            ticks.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        nursery.start_soon(poll_loop)
        for e in events:
            assert notifier.notify_nowait(e)
        await trio.sleep(1)
        assert fine.delivered == [e.type.value for e in events]  # at once, all of them
        await trio.sleep(200)
        notifier.close()
    assert ticks == [start + n for n in range(1, 101)]  # the poll loop never slipped
    assert slow.delivered == [e.type.value for e in events]
    assert [t for _, t in hung.tries][::5] == [e.type.value for e in events]
    assert dict(notifier.status().channels[1].counts)["failed"] == len(events)


async def test_a_full_queue_drops_and_counts_without_blocking(autojump_clock: object) -> None:
    hung, fine = FakeChannel("hung", hang=True), FakeChannel("ok")
    notifier = Notifier([hung, fine], queue_size=len(timeline()), policy=RetryPolicy(attempts=1))
    first, second = timeline(), [attrs.evolve(e, plan="v19") for e in timeline()]
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        for e in first:
            notifier.notify_nowait(e)
        await trio.sleep(0.5)  # both channels took their first event; hung is stuck on it
        before = trio.current_time()
        for e in second:
            notifier.notify_nowait(e)
        assert trio.current_time() == before
        notifier.close()
    hung_counts, fine_counts = (dict(c.counts) for c in notifier.status().channels)
    # hung holds 1 in flight + 7 queued of a queue of 8: one more fits, the other 7 drop
    assert hung_counts["dropped"] == len(second) - 1
    assert hung_counts["failed"] == len(first) + 1
    assert fine_counts["sent"] == 2 * len(first) and fine_counts["dropped"] == 0


async def test_a_shutdown_counts_what_it_drops(autojump_clock: object) -> None:
    """`pending` is what a shutdown would lose (in flight + queued); cancelled, each of those
    is counted and logged as dropped, never silently lost."""
    hung, fine = FakeChannel("hung", hang=True), FakeChannel("ok")
    notifier = Notifier([hung, fine])
    events = timeline()[:3]
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        for e in events:
            notifier.notify_nowait(e)
        await trio.sleep(0.5)  # ok delivered all; hung holds 1 in flight and 2 queued
        assert notifier.pending() == len(events)
        nursery.cancel_scope.cancel()
    hung_counts, fine_counts = (dict(c.counts) for c in notifier.status().channels)
    assert hung_counts["dropped"] == len(events) and hung_counts["sent"] == 0
    assert fine_counts["sent"] == len(events) and fine_counts["dropped"] == 0
    assert notifier.pending() == 0


async def test_closing_delivers_what_is_queued_then_returns(autojump_clock: object) -> None:
    slow = FakeChannel("slow", delay=2)
    notifier = Notifier([slow])
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        for e in timeline()[:3]:
            notifier.notify_nowait(e)
        notifier.close()  # run() returns once the queue is delivered
    assert slow.delivered == [e.type.value for e in timeline()[:3]]
    # the fake takes delay x (n % 3) seconds on its n-th send: sent in turn, nothing dropped
    assert trio.current_time() - start == pytest.approx(sum(2 * (n % 3) for n in (1, 2, 3)))
    assert notifier.pending() == 0


class BrokenSetup(FakeChannel):
    """Set-up is slow and then fails, as Apprise would if its import broke at run time."""

    async def __aenter__(self) -> FakeChannel:
        await trio.sleep(5)
        raise ImportError("no apprise")


async def test_a_broken_channel_is_reported_and_delays_nothing(autojump_clock: object) -> None:
    broken, fine = BrokenSetup("broken"), FakeChannel("ok")
    notifier = Notifier([broken, fine])
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        assert trio.current_time() == start  # started before any channel's set-up ended
        for e in timeline()[:3]:
            notifier.notify_nowait(e)
        notifier.close()
    bad, good = notifier.status().channels
    assert not bad.available and bad.last_error == "unavailable: ImportError"
    assert dict(bad.counts)["dropped"] == 3 and dict(good.counts)["sent"] == 3
    assert notifier.status().failing and broken.tries == []


# ------------------------------------------------------------------ secrets at debug level

_LEAK_SCRIPT = """
import json, sys, trio
from prometheus_client import CollectorRegistry, generate_latest
from gopher_updater import logs
from gopher_updater.notifier import Notifier, NotifyMetrics, RetryPolicy
from gopher_updater.notify import EventType, NotifyEvent
from gopher_updater.notify_config import load_notify_settings
from gopher_updater.testing.notifysink import NotifySink

logs.configure("debug", "json", stream=sys.stderr)
KEY, SECRET, PW, MODE = sys.argv[1:5]
if MODE == "unquieted":  # the control: what Apprise and urllib3 print when left alone
    import gopher_updater.notify_apprise as na
    na.quiet_library_loggers = lambda: None
with NotifySink(key=KEY.encode()) as sink:
    sink.fail_next(2)
    env = {
        "NOTIFY_WEBHOOK_URL": f"{sink.url}/hook/{SECRET}?token={SECRET}",
        "NOTIFY_WEBHOOK_TOKEN": KEY,
        "NOTIFY_URLS": f"json://user:{PW}@127.0.0.1:{sink.port}/{SECRET}"
        f" json://user:{PW}@127.0.0.1:1/{SECRET}",
    }
    settings = load_notify_settings(env)
    logs.get_logger("test").info("settings", **settings.describe())
    registry = CollectorRegistry()
    notifier = Notifier(settings.channels(1.0), metrics=NotifyMetrics(registry),
                        policy=RetryPolicy(attempts=3, first_delay=0.01, attempt_timeout=2.0))
    async def main():
        async with trio.open_nursery() as nursery:
            await nursery.start(notifier.run)
            notifier.notify_nowait(NotifyEvent(EventType.PROMOTED, "c-1", "v1", 10))
            notifier.close()
    trio.run(main)
    try:
        load_notify_settings({"NOTIFY_URLS": f"nosuch://{SECRET}:{PW}@x/{SECRET}"})
    except ValueError as exc:
        print(exc)
    print(json.dumps(notifier.status().to_json()))
    print(generate_latest(registry).decode())
    print("posts", len(sink.posts))
"""


def _run_leak_script(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_LEAK_SCRIPT), KEY, SECRET, "pw-s3cret-QQ", mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_no_url_token_or_key_in_any_output_at_debug_level() -> None:
    result = _run_leak_script("quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "notification_sent" in result.stderr and "notification_retry" in result.stderr
    assert "gopher_updater_notifications_total" in result.stdout and "nosuch" in result.stdout
    assert "posts 4" in result.stdout  # 2 failed + 1 webhook + 1 Apprise delivered
    for needle in (KEY, SECRET, "pw-s3cret-QQ"):
        assert needle not in out


def test_the_leak_check_would_catch_apprise_left_alone() -> None:
    result = _run_leak_script("unquieted")
    assert result.returncode == 0, result.stderr[-3000:]
    assert SECRET in result.stderr  # Apprise/urllib3 debug lines print the request path


def test_metrics_count_per_channel_and_event() -> None:
    registry = CollectorRegistry()
    metrics = NotifyMetrics(registry)
    metrics.count("webhook", EventType.STUCK, "failed")
    metrics.count("webhook", EventType.STUCK, "failed")
    assert sample(registry, "webhook", "stuck", "failed") == 2
    assert b"gopher_updater_notifications_total" in generate_latest(registry)


def _unused(_: Channel) -> None:
    """FakeChannel must satisfy the Channel protocol (checked by mypy via this signature)."""


_unused(FakeChannel("typecheck"))

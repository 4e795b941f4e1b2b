"""The announcer: which facts become which notifications, once each, in order (issue 12).

In-process, with a recording notifier and a chain view computed from trio's clock, so the
reminders at T-24h and T-1h run on `autojump_clock` in milliseconds.
"""

from __future__ import annotations

import attrs
import pytest
import trio

from gopher_updater import timeline as tl
from gopher_updater.announce import Announcer
from gopher_updater.announce_news import SCHEDULED_WAIT, TICK
from gopher_updater.manifest import Outcome
from gopher_updater.model import Height, Plan, RetagJob, RetagReason
from gopher_updater.notify import NotifyEvent
from gopher_updater.rule_records import TagScheme, WatchView
from gopher_updater.views import ChainView, Promotion

TAGS = TagScheme("release-", "mainnet-")
A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
HOUR = 3600.0


class Recorder:
    def __init__(self) -> None:
        self.events: list[NotifyEvent] = []

    def notify_nowait(self, event: NotifyEvent) -> bool:
        self.events.append(event)
        return True

    @property
    def types(self) -> list[str]:
        return [e.type.value + (f":{e.occurrence}" if e.occurrence else "") for e in self.events]


@attrs.define
class Chain:
    """The poller's published view: a plan at H, block time 6 s, ETA from trio's clock."""

    plan: Plan | None = None
    h_at: float = 0.0  # trio time at which block H is expected
    halted: bool = False

    @property
    def view(self) -> ChainView:
        now = trio.current_time()
        eta = None if self.plan is None else max(0.0, self.h_at - now)
        height = None if self.plan is None or eta is None else self.plan.height - int(eta / 6)
        watch = WatchView(plan=self.plan, height=height, block_time=6.0, eta=eta)
        watch = attrs.evolve(watch, halted=self.halted)
        return ChainView(30.0, watch=watch, last_poll_ok=now)


class Reader:
    async def latest_height(self) -> Height:
        return Height(100, chain_id="cosmoshub-4")


def job(plan: Plan, *, halt_seen_at: float | None = 0.0) -> RetagJob:
    return RetagJob(
        plan, "release-" + plan.name, "mainnet-" + plan.name, RetagReason.HALT, halt_seen_at
    )


def record(plan: Plan, outcome: Outcome, digest: str = A, previous: str | None = None) -> Promotion:
    return Promotion(
        plan, RetagReason.HALT, outcome, "release-" + plan.name, "mainnet-" + plan.name,
        digest, previous, dry_run=False,
    )  # fmt: skip


async def started(nursery: trio.Nursery, chain: Chain) -> tuple[Announcer, Recorder]:
    rec = Recorder()
    announcer = Announcer(rec, tags=TAGS, clock=lambda: 1.7e9 + trio.current_time())
    await nursery.start(announcer.run, chain, Reader())
    return announcer, rec


async def test_scheduled_waits_for_eta_and_preflight_then_reminders(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    plan = Plan("v18", 19_000_000)
    chain = Chain(plan, h_at=trio.current_time() + 30 * HOUR)
    announcer, rec = await started(nursery, chain)
    announcer.plan_seen(plan)
    await trio.sleep(2)
    assert rec.events == [], "scheduled waits for the preflight answer"
    announcer.preflight("release-v18", True, A)
    await trio.sleep(1)
    (scheduled,) = rec.events
    assert scheduled.type == "scheduled" and scheduled.source_present is True
    assert scheduled.chain_id == "cosmoshub-4" and scheduled.height == plan.height
    assert scheduled.eta_seconds == pytest.approx(30 * HOUR - 3, abs=1)
    assert (scheduled.source_tag, scheduled.target_tag) == ("release-v18", "mainnet-v18")

    # The image vanishes: source_missing (first), once.
    announcer.preflight("release-v18", False, None)
    announcer.preflight("release-v18", False, None)
    await trio.sleep_until(chain.h_at - 24 * HOUR + TICK + 1)
    assert rec.types == ["scheduled", "source_missing:first", "reminder:24h"]
    assert rec.events[-1].eta_seconds == pytest.approx(24 * HOUR, abs=TICK + 2)
    assert rec.events[-1].source_present is False
    await trio.sleep_until(chain.h_at - HOUR + TICK + 1)
    assert rec.types[3:] == ["reminder:1h", "source_missing:1h"]
    await trio.sleep_until(chain.h_at - 60)
    assert len(rec.events) == 5, "nothing more before H"
    assert all(e.height == plan.height for e in rec.events)


@pytest.mark.parametrize(
    ("ahead", "reminders"),
    [
        (30 * 60, []),
        (2 * HOUR, ["reminder:1h"]),
        (23 * HOUR, ["reminder:1h"]),
        (25 * HOUR, ["reminder:24h", "reminder:1h"]),
    ],
)
async def test_reminders_only_when_the_eta_allows(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    ahead: float,
    reminders: list[str],
) -> None:
    plan = Plan("v7", 700)
    chain = Chain(plan, h_at=trio.current_time() + ahead)
    announcer, rec = await started(nursery, chain)
    announcer.plan_seen(plan)
    announcer.preflight("release-v7", True, A)
    await trio.sleep_until(chain.h_at - 1)
    assert rec.types == ["scheduled", *reminders]


async def test_scheduled_goes_out_with_what_is_known_after_the_wait(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    plan = Plan("v8", 800)
    announcer, rec = await started(nursery, Chain(plan, h_at=trio.current_time() + 600))
    announcer.plan_seen(plan)  # the registry never answers
    await trio.sleep(SCHEDULED_WAIT + 1)
    assert rec.types == ["scheduled"] and rec.events[0].source_present is None


async def test_the_upgrade_in_order_and_once(autojump_clock: trio.testing.MockClock) -> None:
    rec = Recorder()
    a = Announcer(rec, tags=TAGS, clock=lambda: 1.7e9)
    plan = Plan("v2", 200)
    a.plan_seen(plan)
    a.preflight("release-v2", True, A)
    await trio.sleep(5)
    a.halted(job(plan, halt_seen_at=trio.current_time()), 1.7e9)
    assert rec.types == [], "scheduled waits for its ETA, halted for the retag's answer"
    a.promoted(job(plan), record(plan, Outcome.PROMOTED), 0.2)
    timeline = tl.start("v2", 200, stuck_after=60, at=1.7e9)
    timeline, _ = tl.advance(timeline, tl.Halted(1.7e9))
    for stage, at in ((tl.Stage.NUDGED, 1.7e9 + 0.3), (tl.Stage.RESUMED, 1.7e9 + 9)):
        mark = tl.Mark(stage, at)
        timeline = attrs.evolve(timeline, marks=(*timeline.marks, mark))
        a.timeline_mark(timeline, mark)
    assert rec.types == ["scheduled", "halted", "promoted", "nudged", "resumed"]
    promoted, nudged, resumed = rec.events[2:]
    assert (promoted.digest, promoted.delay_seconds, promoted.target_tag) == (A, 0.2, "mainnet-v2")
    assert nudged.delay_seconds == pytest.approx(0.3)
    assert resumed.halt_duration_seconds == pytest.approx(9)


async def test_a_plan_first_seen_halted_gets_no_scheduled() -> None:
    rec = Recorder()
    a = Announcer(rec, tags=TAGS)
    plan = Plan("v2", 200)
    seen = trio.current_time()
    a.plan_seen(plan)
    a.halted(job(plan, halt_seen_at=seen), 1.7e9)
    a.promoted(job(plan, halt_seen_at=seen), record(plan, Outcome.PROMOTED), 0.1)
    assert rec.types == ["halted", "promoted"]


async def test_already_promoted_tells_only_what_this_process_then_sees_happen() -> None:
    """A restart after the promotion: no halted, promoted or nudged, no state it found true
    at its first look; node_upgraded, resumed and stuck when it sees them happen."""
    rec = Recorder()
    a = Announcer(rec, tags=TAGS)
    plan = Plan("v2", 200)
    a.plan_seen(plan)
    a.halted(job(plan, halt_seen_at=trio.current_time()), 1.7e9)
    a.promoted(job(plan), record(plan, Outcome.ALREADY_PROMOTED), None)
    timeline = tl.start("v2", 200, stuck_after=60, at=1.7e9)
    for stage in (tl.Stage.NUDGED, tl.Stage.NODE_UPGRADED, tl.Stage.RESUMED, tl.Stage.STUCK):
        a.timeline_mark(timeline, tl.Mark(stage, 1.7e9), live=False)
    a.timeline_mark(timeline, tl.Mark(tl.Stage.NUDGED, 1.7e9 + 1), live=True)
    a.tick()
    assert rec.events == []
    for stage in (tl.Stage.STUCK, tl.Stage.NODE_UPGRADED, tl.Stage.RESUMED):
        a.timeline_mark(timeline, tl.Mark(stage, 1.7e9 + 2), live=True)
    assert rec.types == ["stuck", "node_upgraded", "resumed"]


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (Outcome.PROMOTED, ["halted", "node_upgraded", "resumed", "promoted"]),
        (Outcome.ALREADY_PROMOTED, ["resumed"]),
    ],
)
async def test_marks_before_the_retag_answers_wait_behind_the_halt(
    outcome: Outcome, expected: list[str]
) -> None:
    """The follower may read the chain before the retag answers: what it sees waits; it goes
    out behind `halted` on a promotion, and only if seen live on `already_promoted`."""
    rec = Recorder()
    a = Announcer(rec, tags=TAGS)
    plan = Plan("v2", 200)
    a.halted(job(plan, halt_seen_at=trio.current_time()), 1.7e9)
    timeline = tl.start("v2", 200, stuck_after=60, at=1.7e9)
    a.timeline_mark(timeline, tl.Mark(tl.Stage.NODE_UPGRADED, 1.7e9 + 1), live=False)
    a.timeline_mark(timeline, tl.Mark(tl.Stage.RESUMED, 1.7e9 + 2), live=True)
    assert rec.events == [], "nothing before the retag's answer"
    a.promoted(job(plan), record(plan, outcome), 0.1)
    assert rec.types == expected


async def test_source_moved_then_promoted_and_conflict_flush_the_halt() -> None:
    rec = Recorder()
    a = Announcer(rec, tags=TAGS)
    v2, v3 = Plan("v2", 200), Plan("v3", 300)
    a.preflight("release-v2", True, A)
    a.preflight("release-v3", True, A)
    a.halted(job(v2), 1.7e9)
    a.promoted(job(v2), record(v2, Outcome.PROMOTED, digest=B), 0.3)
    assert rec.types == ["halted", "source_moved", "promoted"]
    moved = rec.events[1]
    assert (moved.digest, moved.previous_digest) == (B, A)
    rec.events.clear()
    a.halted(job(v3), 1.7e9)
    a.conflict(job(v3), record(v3, Outcome.CONFLICT, digest=A, previous=B))
    assert rec.types == ["halted", "conflict"]
    assert (rec.events[1].digest, rec.events[1].previous_digest) == (A, B)


async def test_missing_at_the_halt_and_a_registry_error_release_the_halt() -> None:
    rec = Recorder()
    a = Announcer(rec, tags=TAGS)
    v2, v3 = Plan("v2", 200), Plan("v3", 300)
    a.halted(job(v2), 1.7e9)
    a.source_missing_at_halt(job(v2))
    a.halted(job(v3), 1.7e9)
    a.retag_failed(job(v3))
    a.retag_failed(job(v3))
    assert rec.types == ["halted", "source_missing:halt", "halted"]


async def test_rescheduled_cancelled_replaced_once_each(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    v1, v1_later, v2 = Plan("v1", 100), Plan("v1", 150), Plan("v2", 300)
    chain = Chain(v1, h_at=trio.current_time() + 600)
    a, rec = await started(nursery, chain)
    a.plan_seen(v1)
    a.preflight("release-v1", True, A)
    await trio.sleep(1)
    a.plan_rescheduled(v1, v1_later)
    chain.plan = v1_later
    a.plan_gone(v1_later, replaced_by=v2)
    a.plan_seen(v2)
    a.plan_cancelled(v1_later)  # applied_plan said 0: v2 took its place
    a.plan_cancelled(v1_later)
    a.plan_gone(v2, replaced_by=None)
    a.plan_cancelled(v2)
    a.plan_cancelled(Plan("never-seen", 5))  # a start-up catch-up's answer: not news
    assert rec.types == ["scheduled", "rescheduled", "replaced", "scheduled", "cancelled"]
    rescheduled, replaced = rec.events[1:3]
    assert (rescheduled.height, rescheduled.previous_height) == (150, 100)
    assert (replaced.plan, replaced.height, replaced.new_plan, replaced.new_height) == (
        "v1", 150, "v2", 300,
    )  # fmt: skip
    assert rec.events[3].plan == "v2", "a pending scheduled goes out before its cancel"


async def test_an_invalid_plan_name_is_told_once_and_never_scheduled(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    bad = Plan("<!channel>", 400)
    a, rec = await started(nursery, Chain(bad, h_at=trio.current_time() + 600))
    a.plan_seen(bad)
    a.invalid_plan(bad, "not a tag")
    await trio.sleep(SCHEDULED_WAIT + TICK)
    assert rec.types == ["invalid_plan"]
    assert rec.events[0].source_tag is None


async def test_silent_without_a_notifier_and_a_bug_never_reaches_the_caller() -> None:
    silent = Announcer()
    silent.plan_seen(Plan("v1", 1))
    assert silent._plans == {}

    class Broken:
        def notify_nowait(self, event: NotifyEvent) -> bool:
            raise RuntimeError("bug")

    broken = Announcer(Broken(), tags=TAGS)
    plan = Plan("v1", 1)
    broken.halted(job(plan), 1.7e9)
    broken.promoted(job(plan), record(plan, Outcome.PROMOTED), 0.1)  # logged, not raised


def test_the_daemon_wires_notifications_only_when_configured() -> None:
    import structlog

    from gopher_updater import config, daemon
    from gopher_updater.metrics import Metrics
    from tests.test_config import BASE

    off = config.load(BASE)
    notifier, announcer = daemon._notifications(off, TAGS, Metrics())
    assert notifier is None and announcer._notifier is None

    env = {**BASE, "NOTIFY_WEBHOOK_URL": "http://127.0.0.1:9/h00k", "NOTIFY_WEBHOOK_TOKEN": "k3y\n"}
    with structlog.testing.capture_logs() as logs:
        notifier, announcer = daemon._notifications(config.load(env), TAGS, Metrics())
    assert notifier is not None and announcer._notifier is notifier
    assert [c.name for c in notifier.status().channels] == ["webhook"]
    events = [entry["event"] for entry in logs]
    assert events == ["notifications", "notify_webhook_token_newline"]
    assert "h00k" not in str(logs) and "k3y" not in str(logs)

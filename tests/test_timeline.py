"""The timeline's transitions (pure) and the follower that drives them (fake chain, MockClock)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry, generate_latest

from gopher_updater import timeline as tl
from gopher_updater.announce import Announcer
from gopher_updater.chain_errors import ChainHTTPError
from gopher_updater.follower import Follower
from gopher_updater.manifest import Outcome
from gopher_updater.metrics import Metrics, UpgradeMetrics
from gopher_updater.model import Height, Plan, RetagJob, RetagReason
from gopher_updater.state import Snapshot, status
from gopher_updater.timeline import ChainRead, Halted, Nudged, Promoted, Stage, Tick
from gopher_updater.views import ChainView, Problems, Promotion, PromotionsView
from gopher_updater.worker import JobQueue, RetagWorker
from tests.test_worker import ScriptedRegistry

H = 1000


def run(*observations: tl.Observation, stuck_after: float = 60.0) -> tuple[tl.Timeline, list]:
    timeline = tl.start("v2", H, stuck_after=stuck_after, at=0.0)
    marks = []
    for obs in observations:
        timeline, added = tl.advance(timeline, obs)
        marks += added
    return timeline, marks


def test_the_whole_way_one_mark_per_transition() -> None:
    t, marks = run(
        Halted(10.0),
        Promoted(10.3, "promoted", delay=0.3),
        Nudged(10.4),
        ChainRead(11.0, block=H, applied=0),
        ChainRead(20.0, block=H, applied=H),
        ChainRead(21.0, block=H, applied=H),  # nothing new: no mark
        ChainRead(25.0, block=H + 1),
        ChainRead(26.0, block=H + 2),
    )
    assert [(m.state, m.at) for m in marks] == [
        (Stage.HALTED, 10.0),
        (Stage.PROMOTED, 10.3),
        (Stage.NUDGED, 10.4),
        (Stage.NODE_UPGRADED, 20.0),
        (Stage.RESUMED, 25.0),
    ]
    assert t.state is Stage.RESUMED and t.done
    assert t.halt_duration == pytest.approx(15.0)
    assert t.promotion_delay == 0.3
    body = t.to_json()
    assert body["state"] == "resumed" and len(body["events"]) == 5
    assert body["halt_duration_seconds"] == pytest.approx(15.0)


def test_stuck_after_the_limit_and_cleared_by_a_late_resume() -> None:
    t, marks = run(
        Halted(0.0),
        Promoted(0.2, "promoted"),
        Tick(59.0),
        ChainRead(60.0, block=H, applied=0),
        ChainRead(61.0, block=H, applied=0),
        stuck_after=60.0,
    )
    assert t.state is Stage.STUCK and [m.state for m in marks][-1] is Stage.STUCK
    assert sum(m.state is Stage.STUCK for m in marks) == 1  # logged once
    t, marks = tl.advance(t, ChainRead(90.0, block=H + 1))
    assert [m.state for m in marks] == [Stage.NODE_UPGRADED, Stage.RESUMED]
    assert t.state is Stage.RESUMED and not t.stuck
    assert t.halt_duration == 90.0
    t, marks = tl.advance(t, Tick(10_000.0))  # resumed: never stuck again
    assert marks == () and t.state is Stage.RESUMED


def test_out_of_order_news_never_moves_the_state_back() -> None:
    t, _ = run(Halted(0.0), Promoted(1.0, "already_promoted"), ChainRead(2.0, block=H, applied=H))
    assert t.state is Stage.NODE_UPGRADED
    t, marks = tl.advance(t, Nudged(3.0))  # recorded, but node_upgraded is further along
    assert [m.state for m in marks] == [Stage.NUDGED] and t.state is Stage.NODE_UPGRADED


def test_a_restarted_daemon_takes_the_halt_from_block_hs_own_time() -> None:
    # Started long after the halt: the poll sees block H now, its header says when it was.
    t, _ = run(Halted(500.0), Promoted(500.2, "already_promoted"), stuck_after=3600)
    t, marks = tl.advance(t, ChainRead(501.0, block=H, applied=0, block_time=100.0))
    assert marks == () and t.at(Stage.HALTED) == 100.0
    t, _ = tl.advance(t, ChainRead(530.0, block=H + 1))
    assert t.halt_duration == 430.0


def test_catch_up_without_a_halt_starts_at_promoted() -> None:
    t, marks = run(Promoted(5.0, "already_promoted"), ChainRead(5.1, block=H + 50, applied=H))
    assert [m.state for m in marks] == [Stage.PROMOTED, Stage.NODE_UPGRADED, Stage.RESUMED]
    assert t.halt_duration is None and t.state is Stage.RESUMED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-04-27T14:35:01.432976256Z", 1682606101.432976),
        ("2023-04-27T14:35:01Z", 1682606101.0),
        ("2023-04-27T16:35:01.5+02:00", 1682606101.5),
        ("", None),
        (None, None),
        ("yesterday", None),
        ("2023-04-27T14:35:01", None),  # no zone: not a chain time
    ],
)
def test_block_times(text: str | None, expected: float | None) -> None:
    got = tl.parse_block_time(text)
    assert got == (None if expected is None else pytest.approx(expected))


# --- the follower -----------------------------------------------------------------------------


class FakeChain:
    def __init__(self) -> None:
        self.block, self.applied, self.fail = H, 0, False
        self.reads = 0

    async def latest_height(self) -> Height:
        self.reads += 1
        if self.fail:
            raise ChainHTTPError("blocks/latest", 503, None, "down", origin="http://lcd")
        return Height(self.block, self.block - 1, chain_id="test-1")

    async def applied_height(self, name: str) -> int:
        return self.applied


def promotion(job: RetagJob, outcome: Outcome) -> Promotion:
    return Promotion(
        job.plan, job.reason, outcome, job.source_tag, job.target_tag, None, None, False
    )


def unix() -> float:
    return 1.7e9 + trio.current_time()


def halt_job() -> RetagJob:
    """The job the poller queues when it confirms the halt of v2 at H, now."""
    return RetagJob(
        Plan("v2", H), "release-v2", "mainnet-v2", RetagReason.HALT,
        halt_seen_at=trio.current_time(), chain_id="test-1",
    )  # fmt: skip


def follower_for(
    chain: Any, metrics: UpgradeMetrics | None = None, announce: Any = None
) -> Follower:
    """A follower of `chain` as the daemon wires it (30 s stuck, 1m polls), on unix time."""
    return Follower(
        chain, metrics or UpgradeMetrics(CollectorRegistry()), stuck_after=30.0,
        poll_interval=60.0, request_timeout=2.0, repository="r", clock=unix,
        announce=announce or Announcer(),
    )  # fmt: skip


async def test_follower_reads_fast_until_resumed_then_stops(autojump_clock: Any) -> None:
    chain = FakeChain()
    metrics = UpgradeMetrics(CollectorRegistry())
    follower = follower_for(chain, metrics)
    job = halt_job()
    async with trio.open_nursery() as nursery:
        await nursery.start(follower.run)
        follower.job_started(job)
        follower.settled(job, promotion(job, Outcome.PROMOTED))
        await trio.sleep(2.0)
        view = follower.view.timeline
        assert view is not None and view.state is Stage.PROMOTED
        assert chain.reads >= 3  # about every 0.5 s
        assert view.promotion_delay is not None
        chain.applied = H
        await trio.sleep(1.0)
        assert follower.view.timeline.state is Stage.NODE_UPGRADED  # type: ignore[union-attr]
        chain.fail = True  # reads failing: the clock still runs toward stuck
        await trio.sleep(40.0)
        assert follower.view.timeline.state is Stage.STUCK  # type: ignore[union-attr]
        assert metrics.state.labels(state="stuck")._value.get() == 1
        chain.fail, chain.block = False, H + 1
        await trio.sleep(6.0)  # stuck: read every 5 s
        final = follower.view.timeline
        assert final is not None and final.state is Stage.RESUMED
        assert metrics.state.labels(state="stuck")._value.get() == 0
        assert metrics.state.labels(state="resumed")._value.get() == 1
        reads = chain.reads
        await trio.sleep(60.0)
        assert chain.reads == reads  # resumed: no more reads
        nursery.cancel_scope.cancel()


async def test_follower_follows_only_the_newest_upgrade(autojump_clock: Any) -> None:
    chain = FakeChain()
    follower = follower_for(chain)
    new = RetagJob(Plan("v3", H), "release-v3", "mainnet-v3", RetagReason.HALT)
    old = RetagJob(Plan("v2", H - 500), "release-v2", "mainnet-v2", RetagReason.CATCH_UP)
    async with trio.open_nursery() as nursery:
        await nursery.start(follower.run)
        follower.job_started(new)
        follower.settled(old, promotion(old, Outcome.ALREADY_PROMOTED))
        await trio.sleep(0.1)
        view = follower.view.timeline
        assert view is not None and view.plan == "v3" and not view.reached(Stage.PROMOTED)
        nursery.cancel_scope.cancel()


class MarksSeen:
    """An announcer stand-in: the marks the follower hands over, with their `live` flag."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, bool]] = []

    def halted(self, job: RetagJob, at: float) -> None:
        pass

    def promoted(self, job: RetagJob, record: Promotion, delay: float | None) -> None:
        pass

    def timeline_mark(self, timeline: Any, mark: Any, live: bool = True) -> None:
        self.marks.append((mark.state.value, live))


async def test_marks_at_the_first_chain_read_are_not_live(autojump_clock: Any) -> None:
    """A restart finds the node already upgraded: that was true before this process looked.
    The chain resuming afterwards is a transition it saw: live."""
    chain = FakeChain()
    chain.applied = H
    seen = MarksSeen()
    follower = follower_for(chain, announce=seen)
    job = halt_job()
    async with trio.open_nursery() as nursery:
        await nursery.start(follower.run)
        follower.job_started(job)
        follower.settled(job, promotion(job, Outcome.ALREADY_PROMOTED))
        await trio.sleep(1.0)
        chain.block = H + 1
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    after_the_retag = [m for m in seen.marks if m[0] not in ("halted", "promoted")]
    assert after_the_retag == [("node_upgraded", False), ("resumed", True)]


# --- the wiring: worker hooks, problem kinds, the scrape-time health ------------------------


class RecordingHooks:
    def __init__(self, *, broken: bool = False) -> None:
        self.started: list[str] = []
        self.settles: list[tuple[str, str]] = []
        self.broken = broken

    def job_started(self, job: RetagJob) -> None:
        self.started.append(job.plan.name)
        if self.broken:
            raise RuntimeError("a timeline bug")

    def settled(self, job: RetagJob, promotion: Promotion) -> None:
        self.settles.append((job.plan.name, promotion.outcome.value))
        if self.broken:
            raise RuntimeError("a timeline bug")


@pytest.mark.parametrize("broken", [False, True])
async def test_the_worker_calls_its_hooks_and_survives_a_broken_one(
    autojump_clock: Any, broken: bool
) -> None:

    outcomes = {"release-v1": Outcome.PROMOTED, "release-v2": Outcome.CONFLICT}
    registry = ScriptedRegistry(lambda tag, _n, _t: outcomes[tag])
    send, receive = trio.open_memory_channel[RetagJob](4)
    hooks = RecordingHooks(broken=broken)
    worker = RetagWorker(registry, Metrics(), JobQueue(send), hooks=hooks)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run, receive)
        for name, height in (("v1", 10), ("v2", 20)):
            await send.send(RetagJob(Plan(name, height), "release-" + name, "mainnet-" + name))
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert hooks.started == ["v1", "v2"]
    assert hooks.settles == [("v1", "promoted")]  # a conflict is not settled
    assert worker.view.last is not None and worker.view.last.outcome is Outcome.CONFLICT
    assert worker.view.problems.kind_of("v2", "?") == "conflict"


def test_problem_kinds_and_the_health_metrics() -> None:

    snap = Snapshot.initial(60.0)
    assert snap.problem_kinds == frozenset()
    chain = ChainView(180.0, problems=Problems().report("bad name", "not a tag"))
    promotions = PromotionsView(
        problems=Problems()
        .report("v1", "source image release-v1 missing", "source_missing")
        .report("v2", "retag failed", "promotion_error")
        .clear("v2")
    )
    snap = Snapshot(chain, snap.governance, snap.registry, promotions)
    assert snap.problem_kinds == {"invalid_plan_name", "source_missing"}

    metrics = Metrics()
    page = generate_latest(metrics.registry).decode()
    assert "gopher_updater_ready 0.0" in page  # unbound: not ready, no problem
    metrics.health.bind(lambda: (True, snap.problem_kinds))
    page = generate_latest(metrics.registry).decode()
    assert "gopher_updater_ready 1.0" in page
    assert 'gopher_updater_problem{kind="source_missing"} 1.0' in page
    assert 'gopher_updater_problem{kind="invalid_plan_name"} 1.0' in page
    assert 'gopher_updater_problem{kind="conflict"} 0.0' in page
    body = status(snap)
    assert body["upgrade"] is None and body["flux"] is None

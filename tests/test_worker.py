"""The retag worker's timing and settling logic, on trio's MockClock (no real sleeps).

The registry is replaced by a scripted stand-in here: what is under test is the worker's
reaction to each outcome (the registry client itself is tested against a real registry).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from gopher_updater.manifest import Outcome, RetagOutcome
from gopher_updater.metrics import Metrics
from gopher_updater.model import Digest, Plan, RetagJob
from gopher_updater.preflight import CONFIRM_MISSING, CREDENTIALS_RETRY, RegistryWatch, Wanted
from gopher_updater.registry_errors import RegistryUnavailable
from gopher_updater.views import PromotionsView, Wakeup
from gopher_updater.worker import (
    ERROR_BACKOFF,
    SOURCE_MISSING_PATIENCE,
    SOURCE_MISSING_RECHECK,
    SOURCE_MISSING_SLOW,
    JobQueue,
    RetagWorker,
)

SRC = Digest("sha256:" + "a" * 64)
OTHER = Digest("sha256:" + "b" * 64)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class ScriptedRegistry:
    """`retag` answers with `decide(job source tag, call number, now)`; records call times."""

    def __init__(self, decide: Callable[[str, int, float], Outcome | Exception]) -> None:
        self.decide = decide
        self.calls: list[tuple[str, float]] = []

    async def retag(self, source_tag: str, target_tag: str) -> RetagOutcome:
        now = trio.current_time()
        self.calls.append((source_tag, now))
        result = self.decide(source_tag, len(self.calls), now)
        if isinstance(result, Exception):
            raise result
        digest = None if result is Outcome.SOURCE_MISSING else SRC
        previous = OTHER if result is Outcome.CONFLICT else None
        return RetagOutcome(result, source_tag, target_tag, digest, previous, False)


def job(name: str, height: int) -> RetagJob:
    return RetagJob(Plan(name, height), "release-" + name, "mainnet-" + name)


async def run(
    registry: ScriptedRegistry, jobs: list[RetagJob], *, for_seconds: float
) -> tuple[JobQueue, PromotionsView, Metrics]:
    """Run the worker on `jobs`; returns the queue, the last published view and the metrics."""
    send, receive = trio.open_memory_channel[RetagJob](16)
    queue, metrics = JobQueue(send), Metrics()
    worker = RetagWorker(registry, metrics, queue)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run, receive)
        for item in jobs:
            assert await queue.submit(item)
            await trio.sleep(1)
        await trio.sleep(for_seconds)
        nursery.cancel_scope.cancel()
    return queue, worker.view, metrics


async def test_source_missing_is_rechecked_until_pushed(autojump_clock: Any) -> None:
    pushed_at = 60.0
    start = trio.current_time()

    def decide(_tag: str, _n: int, now: float) -> Outcome:
        return Outcome.PROMOTED if now - start >= pushed_at else Outcome.SOURCE_MISSING

    registry = ScriptedRegistry(decide)
    queue, state, _ = await run(registry, [job("v2", 10)], for_seconds=120)
    times = [t - start for _, t in registry.calls]
    assert times[-1] - pushed_at <= SOURCE_MISSING_RECHECK  # promoted soon after the push
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(times)}
    assert gaps == {SOURCE_MISSING_RECHECK}
    assert job("v2", 10) in queue.finished and not queue.pending
    assert state.last_promotion is not None and state.last_promotion["outcome"] == "promoted"
    assert state.problem is None


async def test_source_missing_slows_down_after_patience(autojump_clock: Any) -> None:
    registry = ScriptedRegistry(lambda *_: Outcome.SOURCE_MISSING)
    await run(registry, [job("v2", 10)], for_seconds=SOURCE_MISSING_PATIENCE + 300)
    times = [t for _, t in registry.calls]
    first = times[0]
    late = [b - a for a, b in itertools.pairwise(times) if a - first > 1000]
    assert late and set(late) == {SOURCE_MISSING_SLOW}


async def test_conflict_stops_and_is_reported_once(autojump_clock: Any) -> None:
    registry = ScriptedRegistry(lambda *_: Outcome.CONFLICT)
    queue, state, metrics = await run(registry, [job("v2", 10)], for_seconds=600)
    assert len(registry.calls) == 1
    assert "conflict" in (state.problem or "") and "OVERWRITE_TARGET" in (state.problem or "")
    assert job("v2", 10) in queue.finished
    assert metrics.retags.labels(outcome="conflict")._value.get() == 1


async def test_errors_back_off_exponentially_up_to_the_cap(autojump_clock: Any) -> None:
    def decide(_tag: str, n: int, _now: float) -> Outcome | Exception:
        return RegistryUnavailable("503") if n <= 8 else Outcome.PROMOTED

    registry = ScriptedRegistry(decide)
    queue, _, _ = await run(registry, [job("v2", 10)], for_seconds=600)
    times = [t for _, t in registry.calls]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    expected = [min(ERROR_BACKOFF[0] * 2**i, ERROR_BACKOFF[1]) for i in range(8)]
    assert gaps == expected
    assert job("v2", 10) in queue.finished


async def test_a_newer_plan_supersedes_a_stuck_older_job(autojump_clock: Any) -> None:
    def decide(tag: str, _n: int, _now: float) -> Outcome:
        return Outcome.SOURCE_MISSING if tag == "release-v2" else Outcome.PROMOTED

    registry = ScriptedRegistry(decide)
    queue, state, _ = await run(registry, [job("v2", 10), job("v3", 20)], for_seconds=60)
    v2_calls = [t for tag, t in registry.calls if tag == "release-v2"]
    v3_calls = [t for tag, t in registry.calls if tag == "release-v3"]
    assert len(v3_calls) == 1
    assert max(v2_calls) <= v3_calls[0]  # the old job stopped when the new one arrived
    assert {job("v2", 10), job("v3", 20)} <= queue.finished
    assert state.last_promotion is not None
    assert state.last_promotion["target_tag"] == "mainnet-v3"


async def test_queue_deduplicates_pending_and_finished_jobs(autojump_clock: Any) -> None:
    send, receive = trio.open_memory_channel[RetagJob](16)
    queue = JobQueue(send)
    first = job("v2", 10)
    assert await queue.submit(first)
    assert not await queue.submit(job("v2", 10))  # equal value, already queued
    queue.pending.discard(first)
    queue.finished.add(first)
    assert not await queue.submit(first)
    assert await queue.submit(job("v2", 11))  # rescheduled height: a different job
    assert receive.statistics().current_buffer_used == 2


class FlakyCredentials:
    """Refuses credentials for the first `failures` checks; every source tag is present."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.checks: list[float] = []
        self.heads: list[tuple[str, float]] = []

    async def check_push_access(self) -> None:
        self.checks.append(trio.current_time())
        if len(self.checks) <= self.failures:
            raise RegistryUnavailable("registry down")

    async def digest(self, tag: str) -> Digest:
        self.heads.append((tag, trio.current_time()))
        return SRC


async def test_registry_watch_retries_failed_credentials_sooner(autojump_clock: Any) -> None:
    interval = 300.0
    registry = FlakyCredentials(failures=2)
    metrics, wakeup = Metrics(), Wakeup()
    wanted = [Wanted("release-v2", "scheduled")]
    watch = RegistryWatch(registry, metrics, lambda: wanted, interval, wakeup=wakeup)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(watch.run)
        await trio.sleep(1)
        state = watch.view
        assert state.ok is False and "registry down" in (state.error or "")
        await trio.sleep(2 * interval)
        nursery.cancel_scope.cancel()
    offsets = [round(t - start, 6) for t in registry.checks]
    assert offsets[:4] == [
        0,
        CREDENTIALS_RETRY,
        2 * CREDENTIALS_RETRY,
        2 * CREDENTIALS_RETRY + interval,
    ]
    state = watch.view
    assert state.ok is True and state.error is None
    assert state.preflight["release-v2"].present is True
    assert metrics.source_tag_present.labels("release-v2", "scheduled")._value.get() == 1


async def test_registry_watch_wakes_up_when_poked(autojump_clock: Any) -> None:
    registry = FlakyCredentials(failures=0)
    metrics, wakeup = Metrics(), Wakeup()
    tags = [Wanted("release-v2", "scheduled")]
    watch = RegistryWatch(registry, metrics, lambda: tags, interval=600, wakeup=wakeup)
    async with trio.open_nursery() as nursery:
        await nursery.start(watch.run)
        await trio.sleep(10)
        # a new plan appeared: preflight it now, not in 10 minutes
        tags.append(Wanted("release-v3", "upcoming"))
        wakeup.poke()
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert [tag for tag, t in registry.heads if t >= 10] == ["release-v2", "release-v3"]


class Heads:
    """Answers each HEAD of a source tag from a script: a digest, or None (404)."""

    def __init__(self, *answers: Digest | None) -> None:
        self.answers = list(answers)
        self.heads: list[float] = []

    async def check_push_access(self) -> None:
        pass

    async def digest(self, tag: str) -> Digest | None:
        self.heads.append(trio.current_time())
        return self.answers.pop(0)


@pytest.mark.parametrize(
    ("answers", "told"),
    [
        ((SRC, None, SRC), [True]),  # a re-push in place read mid-write: no page
        ((SRC, None, None), [True, False]),  # deleted: missing, after a second read
        ((None, SRC), [False, True]),  # never seen: the first miss is believed
    ],
)
async def test_a_tag_that_was_present_is_missing_only_when_read_missing_twice(
    autojump_clock: Any, answers: tuple[Digest | None, ...], told: list[bool]
) -> None:
    registry, changes = Heads(*answers), []
    watch = RegistryWatch(registry, Metrics(), list, interval=60)
    watch.announce.preflight = lambda tag, present, digest: changes.append(present)  # type: ignore[method-assign]
    wanted = [Wanted("release-v2", "scheduled")]
    await watch.preflight(wanted)
    await watch.preflight(wanted)
    assert changes == told
    assert watch.view.preflight["release-v2"].present is told[-1]
    assert not registry.answers, "every scripted answer was read"
    if len(answers) == 3:
        assert registry.heads[2] - registry.heads[1] == pytest.approx(CONFIRM_MISSING)


def present_series(metrics: Metrics) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["tag"], sample.labels["upgrade"]): sample.value
        for family in metrics.source_tag_present.collect()
        for sample in family.samples
    }


async def test_preflight_series_say_scheduled_or_upcoming_one_per_tag() -> None:
    """A proposal that passes moves its tag from upcoming to scheduled (one series per tag,
    so the alert on a scheduled plan's missing image sees it); a tag no longer wanted goes."""
    metrics = Metrics()
    wanted = [Wanted("release-v2", "scheduled"), Wanted("release-v3", "upcoming")]
    watch = RegistryWatch(FlakyCredentials(failures=0), metrics, lambda: wanted, interval=60)
    await watch.preflight(wanted)
    assert present_series(metrics) == {
        ("release-v2", "scheduled"): 1,
        ("release-v3", "upcoming"): 1,
    }
    assert watch.view.preflight["release-v3"].upgrade == "upcoming"
    await watch.preflight([Wanted("release-v3", "scheduled")])  # v2 applied, v3 passed
    assert present_series(metrics) == {("release-v3", "scheduled"): 1}
    assert watch.view.preflight["release-v3"].upgrade == "scheduled"
    assert set(watch.view.preflight) == {"release-v3"}

"""The LCD pool on trio's MockClock with fake endpoints: concurrency, the grace that keeps a
hung peer from delaying a poll, backoff and re-probe of a dead endpoint, the quorum, and the
poller's fixed cadence in the halt window."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest
import trio

from gopher_updater import quorum, rule_records
from gopher_updater.chain_errors import ChainUnreachable
from gopher_updater.lcd_pool import BACKOFF_MAX, GRACE, LcdPool
from gopher_updater.metrics import Metrics
from gopher_updater.model import Plan, RetagJob
from gopher_updater.poller import HALT_CADENCE, Poller
from gopher_updater.views import Wakeup
from gopher_updater.worker import JobQueue
from tests.test_poller import FakeChain

TIMEOUT = 5.0
PLAN = Plan("v2", 110)
TAGS = rule_records.TagScheme("release-", "mainnet-")


@attrs.define
class Node(FakeChain):
    """A FakeChain that can hang (never answer) or be down (refuse), and lag by blocks."""

    hang: bool = False
    down: bool = False
    lag: int = 0
    shared: FakeChain | None = None  # the chain it serves (with `lag`)
    times: list[float] = attrs.Factory(list)

    async def _request(self, route: str) -> None:
        self.calls.append(route)
        self.times.append(trio.current_time())
        if self.shared is not None:
            self.plan, self.halted = self.shared.plan, self.shared.halted and self.lag == 0
            self.block = self.shared.block - self.lag
            self.applied = self.shared.applied
        if self.hang:
            await trio.sleep_forever()
        await trio.sleep(0.01)
        if self.down:
            raise ChainUnreachable(route, "connection refused")


def always(_: Any) -> bool:
    return True


def never(*_: Any) -> bool:
    return False


async def test_every_endpoint_is_asked_at_once(autojump_clock: Any) -> None:
    a, b = Node(plan=PLAN, block=100), Node(plan=PLAN, block=98)
    pool = LcdPool([("a", a), ("b", b)], request_timeout=TIMEOUT)
    start = trio.current_time()
    sightings = await pool.sight(always, never)
    assert trio.current_time() - start == pytest.approx(0.02)  # two reads each, in parallel
    assert [s.reached for s in sightings] == [100, 98]
    assert [e.height for e in pool.view.endpoints] == [100, 98]


async def test_a_hung_endpoint_costs_a_poll_at_most_the_grace_then_is_backed_off(
    autojump_clock: Any,
) -> None:
    a, hung = Node(plan=PLAN, block=100), Node(plan=PLAN, block=100, hang=True)
    metrics = Metrics()
    pool = LcdPool([("a", a), ("hung", hung)], request_timeout=TIMEOUT, metrics=metrics)
    start = trio.current_time()
    sightings = await pool.sight(always, never)
    took = trio.current_time() - start
    assert took == pytest.approx(0.02 + GRACE)  # never the timeout
    assert [s.plan is not None for s in sightings] == [True, False]
    view = {e.label: e for e in pool.view.endpoints}
    assert view["hung"].up is False and "of the other endpoints" in (view["hung"].last_error or "")
    cancelled = metrics.lcd_requests.labels("hung", "current_plan", "cancelled")
    assert cancelled._value.get() == 1
    # Backed off: the next polls within a second skip it and take no grace at all.
    start = trio.current_time()
    sightings = await pool.sight(always, never)
    assert trio.current_time() - start == pytest.approx(0.02)
    assert [s.endpoint for s in sightings] == ["a"]
    # Alone, a hung endpoint is bounded by REQUEST_TIMEOUT.
    solo = LcdPool([("hung", Node(hang=True))], request_timeout=TIMEOUT)
    start = trio.current_time()
    (sighting,) = await solo.sight(always, never)
    assert trio.current_time() - start == pytest.approx(TIMEOUT)
    assert sighting.plan is None and "no answer within" in (solo.view.endpoints[0].last_error or "")


async def test_a_dead_endpoint_is_re_probed_on_a_doubling_backoff(autojump_clock: Any) -> None:
    a, dead = Node(plan=PLAN, block=100), Node(plan=PLAN, block=100, down=True)
    pool = LcdPool([("a", a), ("dead", dead)], request_timeout=TIMEOUT)
    start = trio.current_time()
    while trio.current_time() - start < 200:
        await pool.sight(always, never)
        await trio.sleep(0.1)
    probes = [t - start for t in dead.times]
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(probes)]
    # ~1, 2, 4, 8, 16 s (each plus one 0.1 s poll step), then every 30 s.
    assert gaps[:5] == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0], abs=0.25)
    assert all(gap == pytest.approx(BACKOFF_MAX, abs=0.25) for gap in gaps[5:])
    assert len(a.calls) > 1500  # the good one is asked every poll
    # Back up: re-probed at the next due time, then asked every poll again.
    dead.down = False
    before = len(dead.calls)
    for _ in range(400):
        await pool.sight(always, never)
        await trio.sleep(0.1)
    assert len(dead.calls) - before > 300
    assert pool.view.endpoints[1].up is True and pool.view.endpoints[1].failures == 0


async def test_a_single_endpoint_is_never_skipped(autojump_clock: Any) -> None:
    dead = Node(plan=PLAN, block=100, down=True)
    pool = LcdPool([("dead", dead)], request_timeout=TIMEOUT)
    for _ in range(10):
        await pool.sight(always, never)
        await trio.sleep(0.1)
    assert len(dead.calls) == 10  # today's behaviour: every poll asks


async def test_quorum_of_confirmed_halts_ends_the_poll_without_waiting(autojump_clock: Any) -> None:
    a = Node(plan=PLAN, block=PLAN.height, halted=True)
    hung = Node(plan=PLAN, block=PLAN.height, hang=True)
    pool = LcdPool([("a", a), ("hung", hung)], request_timeout=TIMEOUT, quorum=1)
    start = trio.current_time()
    sightings = await pool.sight(
        always,
        lambda answer, height: quorum.shows_halt(frozenset(), answer, height) is not None,
        enough=lambda seen: any(quorum.halt_witnesses(frozenset(), seen).values()),
    )
    assert trio.current_time() - start == pytest.approx(0.03)  # plan, block, re-read
    assert quorum.halt_witnesses(frozenset(), sightings) == {PLAN: ("a",)}
    assert pool.view.endpoints[1].up is None  # not needed, so neither late nor backed off


def poller(pool: LcdPool) -> tuple[Poller, trio.MemoryReceiveChannel[RetagJob]]:
    from gopher_updater.governance import Governance

    send, receive = trio.open_memory_channel[RetagJob](16)
    metrics, preflight = Metrics(), Wakeup()
    governance = Governance(pool, preflight, 60.0, request_timeout=TIMEOUT)
    p = Poller(pool, metrics, JobQueue(send), TAGS, governance, preflight, 60.0, TIMEOUT)
    return p, receive


async def test_poller_with_quorum_two_waits_for_the_second_endpoint(autojump_clock: Any) -> None:
    chain = FakeChain(plan=PLAN, block=108)
    ahead = Node(shared=chain)
    behind = Node(shared=chain, lag=2)
    pool = LcdPool([("ahead", ahead), ("behind", behind)], request_timeout=TIMEOUT, quorum=2)
    p, receive = poller(pool)
    await p.poll_once()
    chain.halt_at(PLAN)
    await p.poll_once()
    assert p.view.watch.halted and p.view.watch.promoted == frozenset()
    with pytest.raises(trio.WouldBlock):
        receive.receive_nowait()
    behind.lag = 0
    await p.poll_once()
    assert receive.receive_nowait().plan == PLAN
    ready, error = p.view.health(trio.current_time())
    assert ready, error
    status = {e.label: e for e in p.view.lcd.endpoints}
    assert status["ahead"].height == PLAN.height


async def test_halt_window_polls_at_the_fixed_cadence_and_gives_up_on_a_stalled_chain(
    autojump_clock: Any,
) -> None:
    """6 s blocks, POLL_INTERVAL 60 s: block H is seen within one HALT_CADENCE, with a
    bounded number of requests; if H never comes, the cadence falls back after the window."""
    chain = FakeChain(plan=PLAN, block=100)
    node = Node(shared=chain)
    pool = LcdPool([("a", node)], request_timeout=TIMEOUT)
    p, receive = poller(pool)

    async def blocks(until: int, stall: bool = False) -> None:
        while chain.block < until:
            await trio.sleep(6.0)
            chain.block += 1
        if not stall:
            chain.halt_at(PLAN)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(p.run)
        await blocks(PLAN.height)
        halt_at = trio.current_time()
        job = await receive.receive()
        seen_after = trio.current_time() - halt_at
        nursery.cancel_scope.cancel()
    assert job.plan == PLAN
    assert seen_after <= HALT_CADENCE + 0.05
    requests = len(node.calls)
    print(f"{requests} LCD requests from plan seen to promotion at 6 s blocks")
    assert requests <= 120, requests

    # A chain that stops one block short: the window closes, polls fall back to `fast`.
    chain = FakeChain(plan=PLAN, block=100)
    node = Node(shared=chain)
    p, _ = poller(LcdPool([("a", node)], request_timeout=TIMEOUT))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(p.run)
        await blocks(PLAN.height - 1, stall=True)
        stalled_at = trio.current_time()
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    polls = [t for t, call in zip(node.times, node.calls, strict=True) if call == "current_plan"]
    late = [t for t in polls if t > stalled_at + 6.0 * (1 + 3) + 1]
    gaps = [b - a for a, b in itertools.pairwise(late)]
    assert gaps and min(gaps) >= 0.25 - 1e-6  # no longer the 0.15 s window cadence
    assert len(node.times) < 400


async def test_governance_resumes_its_passed_listing_and_reads_from_the_lead(
    autojump_clock: Any,
) -> None:
    from gopher_updater.governance import Governance
    from gopher_updater.model import ProposalStatus, UpgradeProposal

    voting = UpgradeProposal(7, ProposalStatus.VOTING_PERIOD, Plan("v3", 500))
    passed = UpgradeProposal(5, ProposalStatus.PASSED, Plan("v2", 300))
    behind = Node(plan=PLAN, block=90, proposals=[passed])
    ahead = Node(plan=PLAN, block=100, proposals=[passed, voting])
    pool = LcdPool([("behind", behind), ("ahead", ahead)], request_timeout=TIMEOUT)
    await pool.sight(always, never)
    governance = Governance(pool, Wakeup(), 60.0, request_timeout=TIMEOUT)
    await governance.read(100)
    await governance.read(100)
    assert "proposals" not in behind.calls  # the most advanced healthy endpoint answers
    (first_since, first_reopen), (second_since, second_reopen) = ahead.since
    assert first_since is None and first_reopen == {7}
    assert second_since is not None and [p.id for p in second_since.upgrades] == [5]
    assert second_reopen == {7}  # still in voting: the next walk goes down to it
    assert governance.view.proposals is not None and {p.id for p in governance.view.proposals} == {
        5,
        7,
    }


async def test_labels_and_metrics_never_carry_credentials(nursery: trio.Nursery) -> None:
    from gopher_updater import config
    from gopher_updater.lcd_pool import open_pool

    base = {
        "DOCKERHUB_USER": "me",
        "DOCKERHUB_PASSWORD": "x",
        "REPO_PATH": "me/node",
        "TARGET_PREFIX": "mainnet-",
        "RPC_URL": "http://lcd-user:s3cret@127.0.0.1:9/a,http://127.0.0.1:9/b,http://u:p@[::1]:8",
        "REQUEST_TIMEOUT": "300ms",
    }
    cfg = config.load(base)
    metrics = Metrics()
    async with open_pool(cfg, metrics) as pool:
        assert pool.labels == ["http://127.0.0.1:9", "http://127.0.0.1:9#2", "http://[::1]:8"]
        await pool.sight(always, never)
        text = metrics.render().decode()
        view = repr(pool.view)
    for shown in (text, view):
        assert "s3cret" not in shown and "lcd-user" not in shown and "u:p@" not in shown
    assert 'gopher_updater_lcd_up{endpoint="http://127.0.0.1:9#2"} 0.0' in text

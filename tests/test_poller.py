"""The poller and the governance reader as drivers, on trio's MockClock with a fake chain.

The rule is tested on its own (test_rule.py); what is under test here is the I/O around it:
the re-read of current_plan at the halt (each endpoint's own, before `step_pool` decides),
what each task publishes, and that the ops endpoints' assembly shows every owner's problems.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio

from gopher_updater import rule_records, state
from gopher_updater.chain_errors import ChainUnreachable
from gopher_updater.chain_gov import UpgradeListing
from gopher_updater.governance import Governance
from gopher_updater.metrics import Metrics
from gopher_updater.model import Height, Plan, PlanAnswer, ProposalStatus, RetagJob, UpgradeProposal
from gopher_updater.poller import Poller
from gopher_updater.preflight import Wanted, wanted_tags
from gopher_updater.views import GovernanceView, Problems, PromotionsView, RegistryView, Wakeup
from gopher_updater.worker import JobQueue

TAGS = rule_records.TagScheme("release-", "mainnet-")
POLL_INTERVAL = 60.0


@attrs.define
class FakeChain:
    """x/upgrade as the LCD shows it; every request is recorded and takes 10 ms.

    `before_reread` runs when current_plan is asked again after blocks/latest in the same
    poll (the re-read at the halt): the chain may change between the reads there.
    """

    plan: Plan | None = None
    block: int = 100
    halted: bool = False
    applied: dict[str, int] = attrs.Factory(dict)
    proposals: list[UpgradeProposal] = attrs.Factory(list)
    failing: set[str] = attrs.Factory(set)  # routes answering with an error
    before_reread: Callable[[FakeChain], None] | None = None
    reread_failures: int = 0  # how many re-reads fail before they answer
    calls: list[str] = attrs.Factory(list)
    since: list[tuple[UpgradeListing | None, frozenset[int]]] = attrs.Factory(list)
    _after_height: bool = False

    @property
    def app(self) -> int:
        return self.block - 1 if self.halted else self.block

    async def _request(self, route: str) -> None:
        self.calls.append(route)
        await trio.sleep(0.01)
        if route in self.failing:
            raise ChainUnreachable(route, "connection refused")

    async def current_plan(self) -> PlanAnswer:
        reread, self._after_height = self._after_height, False
        if reread and self.before_reread is not None:
            self.before_reread(self)
        await self._request("current_plan")
        if reread and self.reread_failures > 0:
            self.reread_failures -= 1
            raise ChainUnreachable("current_plan", "connection reset")
        return PlanAnswer(self.plan, self.app)

    async def latest_height(self) -> Height:
        await self._request("blocks/latest")
        # Only a height at or above H makes the poller read the plan again.
        self._after_height = self.plan is not None and self.block >= self.plan.height
        return Height(self.block, self.app)

    async def applied_height(self, name: str) -> int:
        await self._request("applied_plan")
        return self.applied.get(name, 0)

    async def upgrade_proposals(
        self, status: ProposalStatus | None = None, *, page_limit: int = 100
    ) -> list[UpgradeProposal]:
        await self._request("proposals")
        return [p for p in self.proposals if p.status == status]

    async def newest_upgrade_proposals(
        self, status: ProposalStatus | None = None, *, want: int = 1, page_limit: int = 50
    ) -> list[UpgradeProposal]:
        await self._request("proposals")
        found = sorted((p for p in self.proposals if p.status == status), key=lambda p: -p.id)
        return found[:want]

    async def newest_upgrades(
        self,
        status: ProposalStatus | None = None,
        *,
        want: int = 1,
        page_limit: int = 50,
        since: UpgradeListing | None = None,
        reopen: frozenset[int] = frozenset(),
    ) -> UpgradeListing:
        self.since.append((since, reopen))
        found = await self.newest_upgrade_proposals(status, want=want, page_limit=page_limit)
        newest = max((p.id for p in self.proposals), default=0)
        return UpgradeListing(tuple(found), status, want, newest, 1)

    def halt_at(self, plan: Plan) -> None:
        self.plan, self.block, self.halted = plan, plan.height, True

    def upgrade(self) -> None:
        """The new binary starts: the plan is applied and cleared."""
        assert self.plan is not None and self.halted
        self.applied[self.plan.name] = self.plan.height
        self.plan, self.halted = None, False


@attrs.define
class Rig:
    chain: FakeChain
    poller: Poller
    governance: Governance
    receive: trio.MemoryReceiveChannel[RetagJob]
    metrics: Metrics

    def jobs(self) -> list[RetagJob]:
        found = []
        while True:
            try:
                found.append(self.receive.receive_nowait())
            except trio.WouldBlock:
                return found


def rig(chain: FakeChain) -> Rig:
    send, receive = trio.open_memory_channel[RetagJob](16)
    metrics, preflight = Metrics(), Wakeup()
    governance = Governance(chain, preflight, POLL_INTERVAL, request_timeout=5.0)
    poller = Poller(
        chain,
        metrics,
        JobQueue(send),
        TAGS,
        governance,
        preflight,
        poll_interval=POLL_INTERVAL,
        request_timeout=5.0,
    )
    return Rig(chain, poller, governance, receive, metrics)


def job(plan: Plan, reason: str = "halt") -> RetagJob:
    return RetagJob(plan, "release-" + plan.name, "mainnet-" + plan.name, reason)  # type: ignore[arg-type]


PLAN = Plan("v2", 110)


# --- the halt, confirmed by a second read -------------------------------------------------


async def test_halt_with_the_plan_still_current_promotes_in_the_same_poll(
    autojump_clock: Any,
) -> None:
    r = rig(FakeChain(plan=PLAN, block=108))
    await r.poller.poll_once()
    r.chain.halt_at(PLAN)
    r.chain.calls.clear()
    await r.poller.poll_once()
    # The re-read comes right after blocks/latest: no sleep, no extra poll.
    assert r.chain.calls == ["current_plan", "blocks/latest", "current_plan"]
    assert r.jobs() == [job(PLAN)]
    view = r.poller.view.watch
    assert view.halted and view.promoted == {"v2"}
    await r.poller.poll_once()  # still halted: never queued twice, never re-read again
    assert r.jobs() == []
    assert r.chain.calls[3:] == ["current_plan"]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda c: setattr(c, "plan", None), id="cancelled"),
        pytest.param(lambda c: setattr(c, "plan", Plan("v3", 200)), id="replaced"),
        pytest.param(lambda c: setattr(c, "plan", Plan("v2", 150)), id="rescheduled"),
    ],
)
async def test_plan_changed_before_the_re_read_is_not_promoted(
    autojump_clock: Any, change: Callable[[FakeChain], None]
) -> None:
    chain = FakeChain(plan=PLAN, block=108)
    r = rig(chain)
    await r.poller.poll_once()
    chain.block = PLAN.height + 1  # blocks/latest shows >= H ...
    chain.before_reread = change  # ... but the plan is gone by the re-read
    await r.poller.poll_once()
    assert r.jobs() == []
    assert r.poller.view.watch.promoted == frozenset()
    # The next poll decides from what the chain says now: never this plan by a halt.
    chain.before_reread = None
    for _ in range(3):
        await r.poller.poll_once()
    assert r.jobs() == []
    if chain.plan is None or chain.plan.name != "v2":
        assert "applied_plan" in chain.calls  # asked whether it was applied: it was not


async def test_plan_applied_between_the_reads_is_promoted_by_applied_plan(
    autojump_clock: Any,
) -> None:
    chain = FakeChain(plan=PLAN, block=108)
    r = rig(chain)
    await r.poller.poll_once()
    chain.halt_at(PLAN)
    chain.before_reread = FakeChain.upgrade  # the new binary came up between the reads
    await r.poller.poll_once()
    assert r.jobs() == []
    chain.before_reread = None
    await r.poller.poll_once()  # plan gone -> applied_plan says H -> promote
    assert r.jobs() == [job(PLAN, "applied")]


async def test_failed_re_read_keeps_the_poll_and_is_retried_next_poll(
    autojump_clock: Any,
) -> None:
    chain = FakeChain(plan=PLAN, block=100)
    r = rig(chain)
    await r.poller.poll_once()
    chain.halt_at(PLAN)
    chain.reread_failures = 2
    await r.poller.poll_once()
    assert r.jobs() == []
    # The rest of that poll still counts: the height it read, the halt, a good poll.
    published = r.poller.view
    assert published.watch.height == PLAN.height and published.watch.halted
    assert published.last_error is None and published.watch.promoted == frozenset()
    # Driven by its own loop (whose first poll fails the re-read once more): the next poll
    # comes at the fast cadence, well inside the idle interval, and promotes.
    chain.calls.clear()
    async with trio.open_nursery() as nursery:
        await nursery.start(r.poller.run)
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert chain.calls[:6] == ["current_plan", "blocks/latest", "current_plan"] * 2
    assert r.poller.view.watch.promoted == {"v2"}
    assert r.jobs() == [job(PLAN)]


# --- what each task publishes -------------------------------------------------------------


async def test_chain_view_is_published_after_every_poll(autojump_clock: Any) -> None:
    chain = FakeChain(plan=PLAN, block=100)
    r = rig(chain)
    assert r.poller.view.last_poll_ok is None  # nothing published yet
    for _ in range(3):
        await r.poller.poll_once()
        chain.block += 1
        await trio.sleep(6.0)
    view = r.poller.view
    assert view.watch.plan == PLAN and view.watch.tags == rule_records.Tags(
        "release-v2", "mainnet-v2"
    )
    assert view.watch.height == 102 and view.watch.blocks_left == 8
    assert view.watch.block_time == pytest.approx(6.0, abs=0.1)
    assert view.watch.eta == pytest.approx(48.0, abs=1.0)
    assert view.last_error is None and view.poll_failures == 0
    assert r.metrics.upgrade_height._value.get() == PLAN.height
    assert r.metrics.chain_height._value.get() == 102
    chain.failing.add("current_plan")
    await r.poller.poll_once()
    await r.poller.poll_once()
    failed = r.poller.view
    assert failed.poll_failures == 2 and "connection refused" in (failed.last_error or "")
    assert failed.watch.plan == PLAN  # an outage forgets nothing
    ok, error = failed.health(trio.current_time())
    assert ok and error == failed.last_error  # two failures: not yet an outage
    await r.poller.poll_once()
    assert r.poller.view.health(trio.current_time())[0] is False


async def test_invalid_plan_name_is_a_problem_until_the_plan_is_cancelled(
    autojump_clock: Any,
) -> None:
    bad = Plan("v2 final", 110)
    chain = FakeChain(plan=bad, block=100)
    r = rig(chain)
    await r.poller.poll_once()
    assert "not a valid image tag" in (r.poller.view.problems.summary or "")
    assert r.poller.view.watch.tags is None
    chain.plan = None
    await r.poller.poll_once()  # gone -> applied_plan 0 -> cancelled
    assert r.poller.view.problems == Problems()


async def test_governance_publishes_its_view_and_feeds_the_catch_up(
    autojump_clock: Any,
) -> None:
    old, ahead = Plan("v1", 50), Plan("v3", 500)
    chain = FakeChain(plan=None, block=100, applied={"v1": 50})
    chain.proposals = [
        UpgradeProposal(1, ProposalStatus.PASSED, old),
        UpgradeProposal(2, ProposalStatus.VOTING_PERIOD, ahead),
    ]
    r = rig(chain)
    chain.failing.add("proposals")
    async with trio.open_nursery() as nursery:
        await nursery.start(r.poller.run)
        await nursery.start(r.governance.run, r.poller)
        await trio.sleep(1)
        assert r.governance.view.proposals is None  # nothing listed: no catch-up yet
        assert "connection refused" in (r.governance.view.last_error or "")
        assert r.jobs() == []
        chain.failing.clear()
        await trio.sleep(POLL_INTERVAL + 1)  # the retry lists, pokes the poller: catch-up
        nursery.cancel_scope.cancel()
    view = r.governance.view
    assert view.last_error is None
    assert view.proposals is not None and {p.id for p in view.proposals} == {1, 2}
    assert [u.plan for u in view.upcoming] == [ahead]
    assert r.jobs() == [job(old, "catch-up")]
    assert wanted_tags(r.poller.view, view, TAGS) == [Wanted("release-v3", "upcoming")]


async def test_ops_assembly_reads_every_owners_problems(autojump_clock: Any) -> None:
    chain = FakeChain(plan=Plan("v2 final", 110), block=100)
    r = rig(chain)
    await r.poller.poll_once()
    conflict = Problems().report("v1", "conflict: mainnet-v1 holds another digest")
    promotions = PromotionsView(problems=conflict)
    views = state.Views(
        chain=r.poller,
        governance=r.governance,
        registry=_Fixed(RegistryView(ok=True)),
        promotions=_Fixed(promotions),
    )
    ready, body = state.readiness(views.snapshot(), trio.current_time())
    assert ready
    assert "not a valid image tag" in body["problem"] and "conflict" in body["problem"]
    status = state.status(views.snapshot())
    assert status["problem"] == body["problem"]
    assert {p["reported_by"] for p in status["problems"]} == {"chain", "promotions"}
    assert status["chain"]["height"] == 100 and status["plan"]["name"] == "v2 final"


@attrs.frozen
class _Fixed:
    view: Any


def test_snapshot_upcoming_drops_what_the_chain_passed() -> None:
    later = UpgradeProposal(3, ProposalStatus.PASSED, Plan("v3", 300))
    snap = state.Snapshot.initial(POLL_INTERVAL)
    snap = attrs.evolve(
        snap,
        governance=GovernanceView(upcoming=(later,)),
        chain=attrs.evolve(snap.chain, watch=rule_records.WatchView(height=300)),
    )
    assert snap.upcoming == []

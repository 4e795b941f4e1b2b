"""The promotion rule: unit cases from the reference's halt table, then property tests that
drive `step`/`on_confirmed`/`on_applied` with random chain histories (a small model of
x/upgrade at H: block store at H, app at H-1, plan still current), where the chain may also
move between the reads of one poll, and check the safety invariants."""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import attrs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gopher_updater import cadence, rule, rule_records
from gopher_updater.model import (
    Height,
    Plan,
    PlanAnswer,
    ProposalStatus,
    RetagJob,
    UpgradeProposal,
    is_valid_tag,
)
from gopher_updater.quorum import applied_by_quorum, lead, shows_halt
from gopher_updater.rule_records import (
    CheckApplied,
    ConfirmHalt,
    Observation,
    Promote,
    TagScheme,
    Wait,
    WatchState,
)

SRC, DST = "release-", "prod-"
TAGS = TagScheme(SRC, DST)


def run(state: WatchState, obs: Observation) -> rule.Step:
    """One poll whose re-read after a halt answers what the poll read (the plan still current)."""
    result = rule.step(state, obs, tags=TAGS)
    if isinstance(result.decision, ConfirmHalt):
        confirmed = rule.on_confirmed(result.state, result.decision, obs.plan)
        return attrs.evolve(confirmed, events=result.events + confirmed.events)
    return result


def answer(state: WatchState, check: CheckApplied, height: int) -> rule.Step:
    return rule.on_applied(state, check, height, tags=TAGS)


def seen(
    plan: Plan | None, app: int | None, block: int | None = None, at: float = 0.0
) -> Observation:
    """One poll: current_plan answered `plan` with header `app`; blocks/latest said `block`."""
    height = None if block is None else Height(block=block, app=app)
    return Observation(PlanAnswer(plan, app), height, at)


def promotes(result: rule.Step) -> list[RetagJob]:
    return [result.decision.job] if isinstance(result.decision, Promote) else []


# --- unit cases ---------------------------------------------------------------------------


def test_promotes_only_when_blocks_latest_reaches_h() -> None:
    plan = Plan("v18", 21330500)
    h = plan.height
    state = WatchState()
    # Every row of the reference's table before the halt: no promotion.
    for block, app in [(h - 10, h - 10), (h - 1, h - 2), (h - 1, h - 1)]:
        result = run(state, seen(plan, app, block))
        assert promotes(result) == []
        state = result.state
    result = run(state, seen(plan, h - 1, h))  # halted: block store H, app H-1
    assert promotes(result) == [RetagJob(plan, SRC + plan.name, DST + plan.name)]
    assert rule_records.HaltDetected(plan, block=h, app=h - 1) in result.events
    # Still halted on the next polls, then applied: never promoted twice.
    state = result.state
    for obs in [seen(plan, h - 1, h), seen(plan, h - 1, h), seen(None, h, h + 1)]:
        result = run(state, obs)
        assert promotes(result) == []
        assert not isinstance(result.decision, CheckApplied)  # its vanishing is the upgrade
        state = result.state


def test_header_alone_never_promotes() -> None:
    plan = Plan("v2", 100)
    state = run(WatchState(), seen(plan, 50, 50)).state
    for app in (plan.height - 1, plan.height, plan.height + 5):
        result = run(state, seen(plan, app))  # no blocks/latest on this poll
        assert promotes(result) == []
        state = result.state


def test_outage_near_h_never_promotes() -> None:
    plan = Plan("v2", 100)
    state = run(WatchState(), seen(plan, plan.height - 1, plan.height - 1)).state
    for at in range(1, 20):
        result = run(state, Observation(None, None, float(at)))
        assert promotes(result) == []
        assert rule_records.ChainUnavailable() in result.events
        state = result.state
    # The LCD comes back showing the halt: that observation promotes.
    assert len(promotes(run(state, seen(plan, plan.height - 1, plan.height)))) == 1


def test_cancelled_plan_is_checked_then_dropped() -> None:
    plan = Plan("v2", 100)
    state = run(WatchState(), seen(plan, 90, 90)).state
    result = run(state, seen(None, 91, 91))
    assert result.decision == CheckApplied(plan)
    assert rule_records.PlanGone(plan, replaced_by=None, already_promoted=False) in result.events
    # The applied_plan request failed: the check is asked again on the next poll.
    result = run(result.state, seen(None, 92, 92))
    assert result.decision == CheckApplied(plan)
    resolved = answer(result.state, result.decision, 0)
    assert resolved.decision == rule_records.Cancelled(plan)
    state = resolved.state
    for block in range(plan.height - 1, plan.height + 3):
        result = run(state, seen(None, block, block))
        assert result.decision == Wait("no plan")
        state = result.state


def test_plan_applied_while_unobserved_is_promoted_at_applied_height() -> None:
    plan = Plan("v2", 100, info="x")
    state = run(WatchState(), seen(plan, 90, 90)).state
    state = run(state, Observation(None, None, 1.0)).state  # outage across the halt
    result = run(state, seen(None, plan.height + 7, plan.height + 7))
    assert isinstance(result.decision, CheckApplied)
    applied_at = plan.height
    resolved = answer(result.state, result.decision, applied_at)
    expected = RetagJob(attrs.evolve(plan, height=applied_at), SRC + plan.name, DST + plan.name)
    assert promotes(resolved) == [expected]
    assert resolved.decision.job.reason == "applied"  # type: ignore[union-attr]
    assert resolved.state.pending == ()


def test_rescheduled_plan_promotes_only_at_new_height() -> None:
    old = Plan("v2", 100)
    new = Plan("v2", 150)
    state = run(WatchState(), seen(old, 90, 90)).state
    result = run(state, seen(new, 95, 95))
    assert rule_records.PlanRescheduled(old, new) in result.events
    assert not isinstance(result.decision, CheckApplied)
    state = result.state
    for block in range(old.height - 1, new.height):
        result = run(state, seen(new, block, block))
        assert promotes(result) == []
        state = result.state
    assert [j.plan for j in promotes(run(state, seen(new, new.height - 1, new.height)))] == [new]


def test_replaced_plan_is_checked_and_new_plan_watched() -> None:
    old = Plan("v2", 100)
    new = Plan("v3", 120)
    state = run(WatchState(), seen(old, 90, 90)).state
    result = run(state, seen(new, 95, 95))
    assert result.decision == CheckApplied(old)
    state = answer(result.state, result.decision, 0).state
    result = run(state, seen(new, new.height - 1, new.height))
    assert [j.plan for j in promotes(result)] == [new]


def test_halt_promotion_takes_precedence_over_pending_check() -> None:
    old = Plan("v2", 100)
    new = Plan("v3", 101)
    state = run(WatchState(), seen(old, 90, 90)).state
    result = run(state, seen(new, new.height - 1, new.height))
    assert [j.plan for j in promotes(result)] == [new]
    assert result.state.pending == (old,)  # still asked on the next poll
    assert run(result.state, seen(new, new.height - 1, new.height)).decision == CheckApplied(old)


def test_halt_is_confirmed_by_a_second_read_before_promoting() -> None:
    plan = Plan("v2", 100)
    state = rule.step(WatchState(), seen(plan, 98, 98), tags=TAGS).state
    halted = rule.step(state, seen(plan, 99, 100), tags=TAGS)
    assert halted.decision == ConfirmHalt(RetagJob(plan, SRC + "v2", DST + "v2"))
    assert rule_records.HaltDetected(plan, block=100, app=99) in halted.events
    assert "v2" not in halted.state.promoted  # not before the re-read says so
    confirm = halted.decision
    # Re-read: still the plan -> Promote, and only now marked promoted.
    promoted = rule.on_confirmed(halted.state, confirm, PlanAnswer(plan, 99))
    assert promoted.decision == Promote(confirm.job)
    assert promoted.state.promoted == {"v2"}
    # Re-read failed -> Wait; the poll's state (plan, heights) is kept, nothing promoted.
    failed = rule.on_confirmed(halted.state, confirm, None)
    assert isinstance(failed.decision, Wait) and failed.state == halted.state
    assert isinstance(rule.step(failed.state, seen(plan, 99, 100), tags=TAGS).decision, ConfirmHalt)
    # Re-read shows another plan or none -> Wait; the next poll sees the change.
    for other in (None, Plan("v3", 150), Plan("v2", 120)):
        changed = rule.on_confirmed(halted.state, confirm, PlanAnswer(other, 99))
        assert isinstance(changed.decision, Wait) and changed.state == halted.state
        assert rule_records.HaltUnconfirmed(plan, other) in changed.events
        after = rule.step(changed.state, seen(other, 100, 101), tags=TAGS)
        assert not isinstance(after.decision, ConfirmHalt | Promote)


def test_step_view_is_what_the_rule_computed() -> None:
    plan = Plan("v2", 110)
    state = WatchState()
    for i in range(5):
        state = run(state, seen(plan, 100 + i, at=i * 2.0)).state
    view = rule.step(state, seen(plan, 105, at=10.0), tags=TAGS).view
    assert view.plan == plan and view.tags == rule_records.Tags(SRC + "v2", DST + "v2")
    assert (view.height, view.app_height, view.blocks_left) == (105, 105, 5)
    assert view.block_time == pytest.approx(2.0) and view.eta == pytest.approx(10.0)
    assert not view.halted
    halted = run(state, seen(plan, 109, 110, at=20.0))
    assert halted.view.halted and halted.view.promoted == {"v2"} and halted.view.eta == 0.0
    outage = run(halted.state, Observation(None, None, 21.0)).view
    assert outage.app_height == 109 and not outage.halted  # an outage is not a halt
    assert run(WatchState(), seen(Plan("bad name", 5), 1)).view.tags is None


@pytest.mark.parametrize(
    ("source", "target", "name", "tags"),
    [
        ("release-", "mainnet-", "v1.2.3", ("release-v1.2.3", "mainnet-v1.2.3")),
        ("", "mainnet-", "v1.2.3", ("v1.2.3", "mainnet-v1.2.3")),  # bare source tags
        ("", "mainnet-", "-v1", None),  # a bare tag may not start with "-"
        ("release-", "mainnet-", "", None),
    ],
)
def test_tag_scheme(source: str, target: str, name: str, tags: tuple[str, str] | None) -> None:
    got = TagScheme(source, target).for_plan(Plan(name, 10))
    if tags is None:
        assert isinstance(got, rule_records.InvalidPlanName)
    else:
        assert got == rule_records.Tags(*tags)


@pytest.mark.parametrize(
    "name", ["Signal Proposal to Adopt the Liquidity Module", "v1/2", "", "x" * 130, "v1:2"]
)
def test_invalid_plan_name_is_reported_never_promoted(name: str) -> None:
    plan = Plan(name, 100)
    state = WatchState()
    for block in (90, plan.height, plan.height + 1):
        result = run(state, seen(plan, block - 1, block))
        assert isinstance(result.decision, rule_records.InvalidPlanName)
        assert result.decision.plan == plan
        state = result.state


def test_non_positive_plan_height_is_no_plan() -> None:
    for height in (0, -5):
        result = run(WatchState(), seen(Plan("v2", height), 10, 10))
        assert result.decision == Wait("no plan")
        assert result.state.plan is None


def test_catch_up_asks_about_newest_passed_upgrade_only() -> None:
    plans = [Plan(f"v{i}", 1000 * i) for i in range(1, 5)]
    proposals = [
        UpgradeProposal(10, ProposalStatus.PASSED, plans[0]),
        UpgradeProposal(30, ProposalStatus.PASSED, plans[2]),
        UpgradeProposal(20, ProposalStatus.PASSED, plans[1]),
        UpgradeProposal(40, ProposalStatus.REJECTED, plans[3]),
        UpgradeProposal(50, ProposalStatus.PASSED, Plan("signal", 0)),
    ]
    state = WatchState()
    newest_passed = max(
        (p for p in proposals if p.status == ProposalStatus.PASSED and p.plan.height > 0),
        key=lambda p: p.id,
    )
    check = rule.catch_up(state, PlanAnswer(None, 5000), proposals)
    assert check == CheckApplied(newest_passed.plan, reason="catch-up")
    assert rule.catch_up(state, PlanAnswer(plans[3], 5000), proposals) is None  # a plan is current
    assert rule.catch_up(state, PlanAnswer(None, 5000), proposals[3:]) is None
    result = answer(state, check, newest_passed.plan.height)
    assert [j.target_tag for j in promotes(result)] == [DST + newest_passed.plan.name]
    assert result.decision.job.reason == "catch-up"  # type: ignore[union-attr]
    assert rule.catch_up(result.state, PlanAnswer(None, 5000), proposals) is None
    assert answer(state, check, 0).decision == rule_records.Cancelled(newest_passed.plan)


def test_needs_latest_block_keeps_idle_polls_to_one_request() -> None:
    plan = Plan("v2", 100)
    near = cadence.NEAR_BLOCKS
    state = WatchState()
    assert not cadence.needs_latest_block(state, PlanAnswer(None, 50))
    assert not cadence.needs_latest_block(state, PlanAnswer(plan, plan.height - near - 1))
    assert cadence.needs_latest_block(state, PlanAnswer(plan, plan.height - near))
    assert cadence.needs_latest_block(state, PlanAnswer(plan, plan.height - 1))  # the halt
    assert cadence.needs_latest_block(state, PlanAnswer(plan, None))  # no header: must ask
    done = attrs.evolve(state, promoted=frozenset({plan.name}))
    assert not cadence.needs_latest_block(done, PlanAnswer(plan, plan.height - 1))


def test_upcoming_lists_voting_and_passed_upgrades_ahead() -> None:
    height = 1000
    proposals = [
        UpgradeProposal(i, status, Plan(f"p{i}", h))
        for i, (status, h) in enumerate(
            [
                (ProposalStatus.PASSED, height - 1),
                (ProposalStatus.PASSED, height + 500),
                (ProposalStatus.VOTING_PERIOD, height + 100),
                (ProposalStatus.REJECTED, height + 50),
                (ProposalStatus.DEPOSIT_PERIOD, height + 60),
                (ProposalStatus.PASSED, height),
            ]
        )
    ]
    got = rule.upcoming(proposals, height)
    wanted = {
        p.id
        for p in proposals
        if p.status in (ProposalStatus.PASSED, ProposalStatus.VOTING_PERIOD)
        and p.plan.height > height
    }
    assert {p.id for p in got} == wanted
    assert [p.plan.height for p in got] == sorted(p.plan.height for p in got)


def test_wait_reports_blocks_left_and_eta() -> None:
    plan = Plan("v2", 200)
    per_block = 6.0
    state = WatchState()
    for i in range(10):
        result = run(state, seen(plan, 100 + i, at=i * per_block))
        state = result.state
    last = 109
    assert isinstance(result.decision, Wait)
    assert result.decision.blocks_left == plan.height - last
    assert result.decision.eta == pytest.approx((plan.height - last) * per_block)


# --- block time and ETA properties --------------------------------------------------------


@settings(max_examples=500)
@given(
    per_block=st.floats(0.2, 60.0),
    blocks=st.integers(2, 40),
    start=st.integers(1, 10**9),
    t0=st.floats(0, 1e6),
)
def test_block_time_exact_when_every_change_is_seen(
    per_block: float, blocks: int, start: int, t0: float
) -> None:
    changes = [(t0 + i * per_block, start + i) for i in range(blocks)]
    estimate = cadence.block_time(changes)
    assert estimate == pytest.approx(per_block, rel=1e-6)


@settings(max_examples=500)
@given(
    per_block=st.floats(0.5, 30.0),
    period=st.floats(0.1, 60.0),
    polls=st.integers(10, 60),
    phase=st.floats(0, 1),
    into_block=st.floats(0, 1, exclude_max=True),
)
def test_block_time_within_one_poll_period_when_polled(
    per_block: float, period: float, polls: int, phase: float, into_block: float
) -> None:
    """Polling every `period` s a chain producing a block every `per_block` s: each pair of
    change points is off by less than one period, so the median is too. The first read
    lands `into_block` of the way through a block: it is no block boundary, and a daemon
    started late in a block must not learn a block far shorter than the chain's."""
    state = WatchState()
    for k in range(polls):
        now = (k + phase) * period
        height = 1000 + math.floor(now / per_block + into_block)
        state = run(state, seen(None, height, at=now)).state
    estimate = cadence.block_time(state.changes)
    if len(state.changes) < 2:
        assert estimate is None
    else:
        assert estimate is not None
        assert abs(estimate - per_block) <= period + 1e-6


@settings(max_examples=500)
@given(
    per_block=st.floats(0.5, 30.0),
    good=st.integers(5, 20),
    outliers=st.lists(st.floats(100.0, 1e5), max_size=4),
    data=st.data(),
)
def test_block_time_ignores_a_minority_of_outliers(
    per_block: float, good: int, outliers: list[float], data: st.DataObject
) -> None:
    """Stalls (an LCD outage, a slow block) fewer than half the pairs leave the median."""
    gaps = [per_block] * good + [per_block + extra for extra in outliers]
    gaps = data.draw(st.permutations(gaps))
    changes = [(0.0, 1)]
    for gap in gaps:
        changes.append((changes[-1][0] + gap, changes[-1][1] + 1))
    assert cadence.block_time(changes, window=len(gaps)) == pytest.approx(per_block)


@settings(max_examples=500)
@given(
    per_block=st.floats(0.5, 30.0),
    height=st.integers(10, 10**8),
    ahead=st.integers(-5, 10_000),
    waits=st.lists(st.floats(0, 1e4), min_size=1, max_size=10),
)
def test_eta_counts_down_and_never_below_whole_blocks(
    per_block: float, height: int, ahead: int, waits: list[float]
) -> None:
    changes = tuple((i * per_block, height - 5 + i) for i in range(6))
    state = WatchState(changes=changes)
    seen_at, last = changes[-1]
    target = last + ahead
    at_seen = cadence.eta(state, target, seen_at)
    assert at_seen is not None
    if ahead <= 0:
        assert at_seen == 0.0
        return
    assert at_seen == pytest.approx(ahead * per_block)
    previous = at_seen
    for now in sorted(seen_at + w for w in waits):
        current = cadence.eta(state, target, now)
        assert current is not None
        assert current <= previous + 1e-9
        assert current >= (ahead - 1) * per_block - 1e-9
        previous = current


@settings(max_examples=500)
@given(
    heights=st.lists(st.integers(0, 10**6), max_size=30),
    plan_height=st.integers(1, 10**6),
    idle=st.floats(5, 120),
    fast=st.floats(0.1, 5),
    now=st.floats(0, 1e5),
)
def test_suggested_delay_stays_between_fast_and_idle(
    heights: list[int], plan_height: int, idle: float, fast: float, now: float
) -> None:
    plan = Plan("v2", plan_height)
    state = WatchState()
    for i, h in enumerate(sorted(heights)):
        state = run(state, seen(plan, h, at=float(i))).state
    delay = cadence.suggested_delay(state, now, idle=idle, fast=fast)
    assert fast <= delay <= idle
    no_plan = attrs.evolve(state, plan=None)
    assert cadence.suggested_delay(no_plan, now, idle=idle, fast=fast) == idle


# --- the rule against random chain histories ----------------------------------------------


@attrs.define
class ModelChain:
    """x/upgrade as the reference §4 describes it, reduced to what the rule can observe."""

    block: int = 100
    plan: Plan | None = None
    halted: bool = False
    applied: dict[str, int] = attrs.Factory(dict)

    @property
    def app(self) -> int:
        return self.block - 1 if self.halted else self.block

    def advance(self, n: int) -> None:
        for _ in range(n):
            if self.halted:
                return
            self.block += 1
            if self.plan is not None and self.block >= self.plan.height:
                self.halted = True  # block H stored, never committed by the old binary

    def schedule(self, name: str, delta: int) -> None:
        if not self.halted and name not in self.applied:  # the SDK refuses applied names
            self.plan = Plan(name, self.block + delta)

    def cancel(self) -> None:
        if not self.halted:
            self.plan = None

    def upgrade(self) -> None:  # the new binary starts: applies, clears, records H
        if self.halted and self.plan is not None:
            self.applied[self.plan.name] = self.plan.height
            self.plan = None
            self.halted = False


NAMES = st.one_of(
    st.sampled_from(["v2", "v3", "v18", "Vega", "v7-Theta", "v0.5.0"]),
    st.sampled_from(["v2", "v3", "v4"]),
    st.sampled_from(["Signal Proposal", "v1/2", "", "-bad", "x" * 125]),
    st.text(alphabet="vV019_.-", min_size=1, max_size=6),
)
PREFIXES = st.sampled_from([("release-", "prod-"), ("", "live-"), ("src_", ""), ("a" * 120, "b")])

CHAIN_OPS = st.one_of(
    st.tuples(st.just("advance"), st.integers(1, 12)),
    st.tuples(st.just("schedule"), st.tuples(NAMES, st.integers(1, 25))),
    st.tuples(st.just("cancel"), st.none()),
    st.tuples(st.just("upgrade"), st.none()),
)
#: What happens during one poll: chain changes between current_plan and blocks/latest, and
#: between blocks/latest and the re-read after a halt; and whether that re-read fails.
UNDISTURBED: tuple[tuple[tuple[str, object], ...], tuple[tuple[str, object], ...], bool] = (
    (),
    (),
    False,
)
#: The plan is cancelled or replaced right after current_plan answered, then the chain runs
#: past its height: blocks/latest shows >= H for a plan that is no longer scheduled.
GONE_THEN_PAST_H = st.tuples(
    st.tuples(
        st.sampled_from([("cancel", None), ("schedule", ("v9", 30)), ("schedule", ("v2", 40))]),
        st.tuples(st.just("advance"), st.integers(1, 12)),
    ),
    st.just(()),
    st.just(False),
)
DURING_POLL = st.one_of(
    st.just(UNDISTURBED),
    st.just(UNDISTURBED),
    GONE_THEN_PAST_H,
    st.tuples(
        st.lists(CHAIN_OPS, max_size=3).map(tuple),
        st.lists(CHAIN_OPS, max_size=3).map(tuple),
        st.booleans(),
    ),
)
OPS = st.one_of(
    st.tuples(st.just("advance"), st.integers(1, 12)),
    st.tuples(st.just("advance"), st.integers(1, 12)),
    st.tuples(st.just("schedule"), st.tuples(NAMES, st.integers(1, 25))),
    st.tuples(st.just("cancel"), st.none()),
    st.tuples(st.just("upgrade"), st.none()),
    st.tuples(st.just("upgrade"), st.none()),
    st.tuples(
        st.just("poll"),
        st.tuples(st.sampled_from(["auto", "full", "header", "outage"]), DURING_POLL),
    ),
    st.tuples(
        st.just("poll"), st.tuples(st.sampled_from(["auto", "header", "outage"]), DURING_POLL)
    ),
)


def apply(chain: ModelChain, op: str, arg: object) -> float:
    """Apply one chain operation; returns the seconds it took (5 s per block)."""
    if op == "advance":
        assert isinstance(arg, int)
        chain.advance(arg)
        return arg * 5.0
    if op == "schedule":
        assert isinstance(arg, tuple)
        chain.schedule(*arg)
    elif op == "cancel":
        chain.cancel()
    elif op == "upgrade":
        chain.upgrade()
    return 0.0


@settings(max_examples=500, deadline=None)
@given(
    ops=st.lists(OPS, min_size=20, max_size=100),
    prefixes=PREFIXES,
    check_fails=st.lists(st.booleans()),
)
def test_rule_is_safe_on_random_histories(
    ops: Sequence[tuple[str, object]], prefixes: tuple[str, str], check_fails: list[bool]
) -> None:
    src, dst = prefixes
    tags = TagScheme(src, dst)
    chain = ModelChain()
    state = WatchState()
    promoted: list[RetagJob] = []
    watched: set[str] = set()  # names the watcher saw as the current plan
    fails = iter(check_fails)  # which applied_plan requests fail (until the drain)
    at = 0.0

    def act(
        result: rule.Step,
        obs: Observation | None,
        *,
        lcd_flaky: bool = True,
        between: Sequence[tuple[str, object]] = (),
        reread_fails: bool = False,
        before: WatchState | None = None,
    ) -> WatchState:
        decision = result.decision
        reread: PlanAnswer | None = None
        if isinstance(decision, ConfirmHalt):
            assert decision.job.reason == "halt"
            for op, arg in between:  # the chain moves on before the re-read
                apply(chain, op, arg)
            reread = None if reread_fails else PlanAnswer(chain.plan, chain.app)
            halted_plan = decision.job.plan
            result = rule.on_confirmed(result.state, decision, reread)
            decision = result.decision
            if reread is None:
                event("re-read failed -> Wait")
            elif reread.plan != halted_plan:
                gone = "vanished" if reread.plan is None else "replaced"
                event(f"re-read: plan {gone} -> {type(decision).__name__}")
            if isinstance(decision, Promote):
                # The re-read (after blocks/latest) still showed the plan: the chain really
                # is halted at it. A vanished or replaced plan is never promoted this way.
                assert reread is not None and reread.plan == decision.job.plan
                assert chain.halted and chain.plan == decision.job.plan
        if before is not None and obs is not None:
            # The daemon drives `step_pool`; with one endpoint it must promote exactly when
            # `step` + `on_confirmed` (the single-LCD statement of the rule) does.
            sighting = rule_records.Sighting("lcd", obs.plan, obs.height, reread)
            pooled = rule.step_pool(before, [sighting], obs.at, tags=tags, quorum=1)
            assert promotes(pooled) == promotes(result)
            assert pooled.state.promoted == result.state.promoted
        if isinstance(decision, CheckApplied) and not (lcd_flaky and next(fails, False)):
            # applied_plan answers from the chain as it is *now*
            height = chain.applied.get(decision.plan.name, 0)
            result = rule.on_applied(result.state, decision, height, tags=tags)
            decision = result.decision
            event(f"applied_plan -> {type(decision).__name__}")
            if isinstance(decision, rule_records.Cancelled):
                watched.discard(decision.plan.name)  # it may come back, then be seen again
            if isinstance(decision, Promote):
                # Only plans the chain really applied are promoted without a halt.
                assert chain.applied.get(decision.job.plan.name) == decision.job.plan.height
        if isinstance(decision, Promote):
            job = decision.job
            assert is_valid_tag(job.source_tag) and is_valid_tag(job.target_tag)
            assert (job.source_tag, job.target_tag) == (src + job.plan.name, dst + job.plan.name)
            assert job.plan.name not in {j.plan.name for j in promoted}, "promoted twice"
            if job.reason == "halt":
                # The very observation showed the plan current and blocks/latest >= H.
                assert obs is not None and obs.plan is not None and obs.height is not None
                assert obs.plan.plan == job.plan and obs.height.block >= job.plan.height
            promoted.append(job)
            event(f"promoted ({job.reason})")
        elif isinstance(decision, rule_records.InvalidPlanName):
            assert not (
                is_valid_tag(src + decision.plan.name)
                and is_valid_tag(dst + decision.plan.name)
                and decision.plan.name
            )
        return result.state

    for op, arg in ops:
        if op != "poll":
            at += apply(chain, op, arg)
            continue
        assert isinstance(arg, tuple)
        mode, (before_height, before_reread, reread_fails) = arg
        at += 1.0
        if mode == "outage":
            obs = Observation(None, None, at)
        else:
            plan_answer = PlanAnswer(chain.plan, chain.app)
            wants_block = mode == "full" or (
                mode == "auto" and cadence.needs_latest_block(state, plan_answer)
            )
            for chain_op, chain_arg in before_height:  # the chain moves on meanwhile
                apply(chain, chain_op, chain_arg)
            height = Height(chain.block, chain.app) if wants_block else None
            obs = Observation(plan_answer, height, at)
        undisturbed = (before_height, before_reread, reread_fails) == UNDISTURBED
        result = rule.step(state, obs, tags=tags)
        if obs.plan is not None and obs.plan.plan is not None:
            watched.add(obs.plan.plan.name)
        state = act(result, obs, between=before_reread, reread_fails=reread_fails, before=state)
        # Liveness: a halt observed through blocks/latest is promoted on that very poll
        # (when the chain held still and the re-read answered).
        if undisturbed and chain.halted and obs.height is not None and chain.plan is not None:
            name = chain.plan.name
            if name and is_valid_tag(src + name) and is_valid_tag(dst + name):
                assert name in {j.plan.name for j in promoted}

    # Drain: the LCD answers every request from now on, the chain may keep going.
    for _ in range(len(state.pending) + 2):
        at += 1.0
        plan_answer = PlanAnswer(chain.plan, chain.app)
        obs = Observation(plan_answer, Height(chain.block, chain.app), at)
        result = rule.step(state, obs, tags=tags)
        if chain.plan is not None:
            watched.add(chain.plan.name)
        state = act(result, obs, lcd_flaky=False)
    assert state.pending == ()
    # Every plan the watcher saw that the chain applied is promoted (valid names only), and
    # nothing else: no cancelled or replaced plan, no plan that never reached its height.
    reached = set(chain.applied) | ({chain.plan.name} if chain.halted and chain.plan else set())
    expected = {
        name
        for name in watched & reached
        if name and is_valid_tag(src + name) and is_valid_tag(dst + name)
    }
    assert {j.plan.name for j in promoted} == expected


@pytest.mark.parametrize("module", [rule, cadence], ids=lambda m: m.__name__)
def test_rule_module_does_no_io(module: ModuleType) -> None:
    """The rule and its cadence stay pure: nothing in them can touch the network, the clock
    or the disk."""
    tree = ast.parse(Path(module.__file__ or "").read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
    }
    io_modules = {"httpx", "trio", "socket", "anyio", "time", "os", "asyncio", "h11"}
    assert imported, "the walk found the imports"
    assert not imported & io_modules


# --- several endpoints: the rule per endpoint, a quorum of them ----------------------------


def sight(
    name: str,
    plan: Plan | None,
    app: int,
    block: int | None = None,
    reread: Plan | str | None = "same",
) -> rule_records.Sighting:
    """One endpoint's poll; `reread` "same" = its re-read (if the rule asks) holds `plan`."""
    answer = PlanAnswer(plan, app)
    height = None if block is None else Height(block, app)
    again = None
    if shows_halt(frozenset(), answer, height) is not None:
        again = PlanAnswer(plan if reread == "same" else reread, app)  # type: ignore[arg-type]
    return rule_records.Sighting(name, answer, height, again)


def pool_step(
    state: WatchState, sightings: Sequence[rule_records.Sighting], *, quorum: int, at: float = 0.0
) -> rule.Step:
    return rule.step_pool(state, sightings, at, tags=TAGS, quorum=quorum)


def test_one_endpoint_pool_is_the_single_lcd_rule() -> None:
    plan = Plan("v2", 100)
    h = plan.height
    state = pool_step(WatchState(), [sight("a", plan, h - 2, h - 2)], quorum=1).state
    result = pool_step(state, [sight("a", plan, h - 1, h)], quorum=1)
    assert promotes(result) == [RetagJob(plan, SRC + "v2", DST + "v2")]
    assert rule_records.HaltWitnessed(plan, ("a",), 1) in result.events
    # A re-read showing another plan, or failing, promotes nothing.
    for reread in (None, Plan("v3", 200)):
        s = sight("a", plan, h - 1, h, reread=reread)
        if reread is None:
            s = attrs.evolve(s, reread=None)
        result = pool_step(state, [s], quorum=1)
        assert promotes(result) == [] and isinstance(result.decision, Wait)


def test_quorum_two_needs_two_endpoints_confirming_the_halt() -> None:
    plan = Plan("v2", 100)
    h = plan.height
    state = pool_step(WatchState(), [sight("a", plan, 90, 90), sight("b", plan, 90, 90)], quorum=2)
    state = state.state
    # A lying (or early) endpoint alone shows the halt: nothing, whatever it says next.
    liar = sight("a", plan, h - 1, h + 5)
    honest = sight("b", plan, h - 2, h - 2)
    result = pool_step(state, [liar, honest], quorum=2)
    assert promotes(result) == []
    assert isinstance(result.decision, Wait) and "1 of 2" in result.decision.reason
    # The same endpoint twice is one witness.
    assert promotes(pool_step(state, [liar, liar], quorum=2)) == []
    # Two agreeing endpoints promote.
    result = pool_step(state, [liar, sight("b", plan, h - 1, h)], quorum=2)
    assert promotes(result) == [RetagJob(plan, SRC + "v2", DST + "v2")]


def test_lagging_endpoint_neither_triggers_nor_vetoes() -> None:
    plan = Plan("v2", 100)
    h = plan.height
    state = pool_step(WatchState(), [sight("a", plan, 95, 95)], quorum=1).state
    lagging = sight("b", plan, h - 2, h - 2)
    result = pool_step(state, [lagging, sight("a", plan, h - 1, h)], quorum=1)
    assert len(promotes(result)) == 1
    # The view follows the most advanced endpoint: a lagging one still showing a cancelled
    # plan does not keep it alive, nor does one that has not seen a new plan hide it.
    result = pool_step(state, [sight("b", plan, 96, 96), sight("a", None, 97, 97)], quorum=1)
    assert result.state.plan is None and result.decision == CheckApplied(plan)
    newer = Plan("v3", 200)
    result = pool_step(state, [sight("b", None, 90), sight("a", newer, 97)], quorum=1)
    assert result.state.plan == newer
    assert lead([], 1.0) == Observation(None, None, 1.0)


def test_applied_plan_needs_a_quorum_and_a_zero_only_counts_from_up_to_date_endpoints() -> None:
    plan = Plan("v2", 100)
    check = CheckApplied(plan)
    gone = sight("a", None, 101, 101)
    still = sight("b", plan, 99, 99)  # lagging: still shows the plan

    def ans(s: rule_records.Sighting, height: int) -> rule_records.AppliedAnswer:
        return rule_records.AppliedAnswer(s.endpoint, height, s)

    q = applied_by_quorum
    assert q(check, [ans(gone, 100)], quorum=1, floor=101) == 100
    assert q(check, [ans(gone, 0)], quorum=1, floor=101) == 0
    assert q(check, [ans(still, 0)], quorum=1, floor=101) is None  # it does not know yet
    behind = sight("c", None, 95, 95)  # no plan, but behind the view: maybe before the plan
    assert q(check, [ans(behind, 0)], quorum=1, floor=101) is None
    assert q(check, [ans(gone, 100), ans(still, 0)], quorum=2, floor=101) is None
    other = sight("d", None, 101, 101)
    assert q(check, [ans(gone, 100), ans(other, 100)], quorum=2, floor=101) == 100
    assert q(check, [ans(gone, 0), ans(other, 0)], quorum=2, floor=101) == 0
    assert q(check, [ans(gone, 100), ans(gone, 100)], quorum=2, floor=101) is None


def test_halt_window_opens_before_h_is_due_and_closes_when_the_chain_stalls() -> None:
    plan = Plan("v2", 110)
    per_block = 6.0
    state = WatchState()
    # Polled every 1.5 s from height 100: each new height seen within 1.5 s of its block.
    at = 0.0
    while at < 9 * per_block + 0.1:
        state = run(state, seen(plan, 100 + math.floor(at / per_block), at=at)).state
        at += 1.5
    assert state.height == 109
    span = cadence.halt_window(state, plan.height)
    assert span is not None
    opens, closes = span
    due = 10 * per_block  # block 110 is produced at t = 60
    assert due - per_block * cadence.WINDOW_EARLY - 1.5 <= opens <= due - per_block * 0.1
    assert closes == pytest.approx(9 * per_block + (1 + cadence.STALL_BLOCKS) * per_block, abs=1.5)
    fast, window = 1.5, 0.15
    delay = cadence.suggested_delay
    before = delay(state, opens - 3.0, idle=60, fast=fast, window=window)
    assert window <= before <= fast
    assert delay(state, opens + 0.01, idle=60, fast=fast, window=window) == window
    assert delay(state, closes - 0.01, idle=60, fast=fast, window=window) == window
    assert delay(state, closes + 1.0, idle=60, fast=fast, window=window) == fast  # stalled
    assert delay(state, opens, idle=60, fast=fast) == fast  # without a window: as before
    # Learning the block time, far from H: one poll a second, not `fast`.
    young = run(WatchState(), seen(Plan("v9", 10_000), 100, at=0.0)).state
    assert delay(young, 0.5, idle=60, fast=0.25, window=window) == cadence.LEARN_CADENCE


@settings(max_examples=300, deadline=None)
@given(
    heights=st.lists(st.integers(0, 400), min_size=1, max_size=30),
    plan_height=st.integers(1, 400),
    idle=st.floats(5, 120),
    fast=st.floats(0.2, 5),
    window=st.floats(0.1, 0.3),
    now=st.floats(0, 1e3),
)
def test_suggested_delay_with_a_window_stays_within_bounds(
    heights: list[int], plan_height: int, idle: float, fast: float, window: float, now: float
) -> None:
    plan = Plan("v2", plan_height)
    state = WatchState()
    for i, h in enumerate(sorted(heights)):
        state = run(state, seen(plan, h, at=float(i) * 3)).state
    delay = cadence.suggested_delay(state, now, idle=idle, fast=fast, window=window)
    assert min(window, fast) <= delay <= idle


# --- the pool rule against random chain histories, lagging and lying endpoints ----------


@attrs.frozen
class Snap:
    block: int
    app: int
    plan: Plan | None
    applied: tuple[tuple[str, int], ...]


def snap(chain: ModelChain) -> Snap:
    return Snap(chain.block, chain.app, chain.plan, tuple(chain.applied.items()))


LIES = st.tuples(
    st.one_of(
        st.none(), st.builds(Plan, st.sampled_from(["v2", "v3", "v9"]), st.integers(90, 200))
    ),
    st.integers(50, 300),
    st.booleans(),
    st.integers(0, 300),
)


@settings(max_examples=400, deadline=None)
@given(
    ops=st.lists(OPS, min_size=20, max_size=80),
    lags=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1),
    lies=st.lists(LIES, min_size=1),
    liar=st.booleans(),
    quorum=st.sampled_from([1, 2]),
)
def test_pool_rule_is_safe_with_lagging_and_lying_endpoints(
    ops: Sequence[tuple[str, object]],
    lags: list[tuple[int, int]],
    lies: list[tuple[Plan | None, int, bool, int]],
    liar: bool,
    quorum: int,
) -> None:
    """Two honest endpoints showing the chain as it was a few changes ago (each its own
    lag), and, with quorum 2, possibly a third that answers anything at all. Whatever they
    say: a halt promotion is always of a plan the chain really halted at, an applied one of
    a plan it really applied, never twice; a vanished or replaced plan is never promoted."""
    liar = liar and quorum == 2
    chain = ModelChain()
    history = [snap(chain)]
    halted_at: set[Plan] = set()  # plans the chain really halted at
    state = WatchState()
    promoted: list[RetagJob] = []
    lag_it, lie_it = iter(lags * 100), iter(lies * 100)
    at = 0.0

    def honest(name: str, lag: int) -> rule_records.Sighting:
        index = max(0, len(history) - 1 - lag)
        then = history[index]
        answer = PlanAnswer(then.plan, then.app)
        height = Height(then.block, then.app) if cadence.needs_latest_block(state, answer) else None
        reread = None
        if shows_halt(state.promoted, answer, height) is not None:
            later = history[min(len(history) - 1, index + 1)]  # the chain may move on
            reread = PlanAnswer(later.plan, later.app)
        return rule_records.Sighting(name, answer, height, reread)

    def lying() -> rule_records.Sighting:
        plan, block, confirm, _ = next(lie_it)
        answer = PlanAnswer(plan, block - 1)
        return rule_records.Sighting(
            "liar", answer, Height(block, block - 1), answer if confirm else None
        )

    for op, arg in ops:
        if op != "poll":
            at += apply(chain, op, arg)
            history.append(snap(chain))
            if chain.halted and chain.plan is not None:
                halted_at.add(chain.plan)
            continue
        at += 1.0
        lag_a, lag_b = next(lag_it)
        sightings = [honest("a", lag_a), honest("b", lag_b)]
        if liar:
            sightings.append(lying())
        result = rule.step_pool(state, sightings, at, tags=TAGS, quorum=quorum)
        decision = result.decision
        assert not isinstance(decision, ConfirmHalt)
        if isinstance(decision, CheckApplied):
            answers = []
            for s in sightings:
                if s.endpoint == "liar":
                    answers.append(rule_records.AppliedAnswer("liar", next(lie_it)[3], s))
                    continue
                then = history[max(0, len(history) - 1 - (lag_a if s.endpoint == "a" else lag_b))]
                answers.append(
                    rule_records.AppliedAnswer(
                        s.endpoint, dict(then.applied).get(decision.plan.name, 0), s
                    )
                )
            height = applied_by_quorum(decision, answers, quorum=quorum, floor=result.state.height)
            if height is not None:
                result = rule.on_applied(result.state, decision, height, tags=TAGS)
                decision = result.decision
                if isinstance(decision, Promote):
                    assert chain.applied.get(decision.job.plan.name) == decision.job.plan.height
        if isinstance(decision, Promote):
            job = decision.job
            assert job.plan.name not in {j.plan.name for j in promoted}, "promoted twice"
            if job.reason == "halt":
                assert job.plan in halted_at, f"{job.plan} never halted the chain"
                event(f"halt promoted (quorum {quorum}, liar {liar})")
            promoted.append(job)
        state = result.state

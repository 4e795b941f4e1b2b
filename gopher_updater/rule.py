"""The promotion rule, as pure functions over frozen values (no I/O, no clock, no logging).

This module decides whether and when a plan is promoted (the halt protocol below, the pool
quorum, the applied_plan settlement, catch-up). The records it works on (observations,
state, view, decisions, events, tags) are `rule_records.py`; the evidence per LCD endpoint
is `quorum.py`. How soon and how much to read (block time, ETA, halt window, poll delay,
whether to ask blocks/latest) lives in `cadence.py`: it costs latency, never safety.

The rule (cosmos-lcd reference §4): promote plan P at height H only when `current_plan` holds
P, then `blocks/latest` shows a block height >= H, and then `current_plan` STILL holds P. At
the halt the block store holds H while the app (and the height header) stays at H-1, so the
header is never evidence; neither is an unreachable LCD, which is normal near H (pods
crash-loop) and says nothing about the height. The second read of `current_plan` makes the
rule hold in time order: the plan is still scheduled *after* the block store reached H, which
only a halt explains (a plan cancelled between the first read and the height read is caught).

The whole protocol, as the poller drives it once per poll:

    answer = await chain.current_plan()              # (ChainError -> Observation(None, ...))
    height = await chain.latest_height() if cadence.needs_latest_block(state, answer) else None
    result = step(state, Observation(answer, height, trio.current_time()), tags=scheme)
    state = result.state; log result.events; publish result.view; act on result.decision:
      ConfirmHalt(job)  -> again = await chain.current_plan()   (None if that fails)
                           result = on_confirmed(state, decision, again)  -> Promote or Wait
      Promote(job)      -> retag (retrying until done; the rule never emits it twice)
      CheckApplied(p)   -> h = await chain.applied_height(p.name)
                           result = on_applied(state, decision, h, tags=scheme) -> Promote,
                           Cancelled, InvalidPlanName or Wait
      InvalidPlanName   -> report (status, metric); never retag
      Wait / Cancelled  -> nothing; `cadence.suggested_delay` picks the next poll

The confirmation comes right after the halt observation, in the same poll: it costs one small
request once per upgrade and no latency. A failed or different re-read is a `Wait`: nothing
is marked promoted, the rest of that poll's `Step` (its state, events and view) still holds,
and the next poll that sees the halt asks again.

Several LCD endpoints (`RPC_URL` lists them): the daemon always drives `step_pool`, which
with one endpoint promotes exactly when `step` + `on_confirmed` above does (those two stay the
single-LCD statement of the rule; the model-based property test holds the two equal). Each
poll asks every endpoint at once, each endpoint doing the reads above on its own
(`cadence.needs_latest_block`, and the re-read when `shows_halt` holds for ITS reads), giving one
`Sighting` per endpoint. Then `step_pool(state, sightings, at, tags=, quorum=)` decides: the view
follows the most advanced endpoint (`lead`), and plan P promotes once `quorum` distinct
endpoints each showed its halt confirmed by their own re-read (`halt_witnesses`). A
`CheckApplied` asks `applied_plan` of every endpoint that answered and settles with
`applied_by_quorum` (None: ask again) before `on_applied`.

Start-up catch-up: if `catch_up(state, answer, newest_passed)` returns a CheckApplied, do the
same applied_plan round trip; a plan applied while the daemon was down is then promoted (the
registry step later skips it when the target already points at the source digest).

A plan that vanishes (cancelled, replaced, or applied while we were not looking) is queued in
`WatchState.pending` and `CheckApplied` is repeated every poll until `on_applied` resolves it,
so a failed applied_plan request loses nothing.

Tags are built from a plan name in one place, `TagScheme.for_plan`; a name that cannot become
a tag is reported, never sanitised.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from gopher_updater.cadence import MAX_SAMPLES, block_time, eta
from gopher_updater.model import (
    Plan,
    PlanAnswer,
    ProposalStatus,
    RetagJob,
    RetagReason,
    UpgradeProposal,
    scheduled,
)
from gopher_updater.quorum import halt_witnesses, lead, shows_halt
from gopher_updater.rule_records import (
    Cancelled,
    ChainUnavailable,
    CheckApplied,
    ConfirmHalt,
    Decision,
    Event,
    HaltDetected,
    HaltUnconfirmed,
    HaltWitnessed,
    InvalidPlanName,
    Observation,
    PlanAppliedElsewhere,
    PlanCancelled,
    PlanGone,
    PlanRescheduled,
    PlanSeen,
    Promote,
    Sighting,
    Tags,
    TagScheme,
    Wait,
    WatchState,
    WatchView,
)


@attrs.frozen
class Step:
    state: WatchState
    decision: Decision
    events: tuple[Event, ...] = ()

    @property
    def view(self) -> WatchView:
        return view(self.state)


# --- the rule -----------------------------------------------------------------------------


def step(state: WatchState, obs: Observation, *, tags: TagScheme) -> Step:
    """Advance the watch by one observation and say what to do now."""
    state = _observe(state, obs)
    if obs.plan is None:
        wait = _wait(state, state.plan, "chain unavailable")
        return Step(state, wait, (ChainUnavailable(),))

    current = obs.plan.plan
    state, events = _track(state, current)
    named = None if current is None else tags.for_plan(current)
    state = attrs.evolve(state, tags=named if isinstance(named, Tags) else None)

    halt = _halt_evidence(state, obs)
    if halt is not None:
        events.append(halt)
        if isinstance(named, Tags):  # first: the halt is the time-critical moment
            job = RetagJob(
                halt.plan,
                named.source,
                named.target,
                RetagReason.HALT,
                halt_seen_at=obs.at,
                chain_id=obs.height.chain_id if obs.height else None,
            )
            return Step(state, ConfirmHalt(job), tuple(events))
    return Step(state, _settle(state, current, named), tuple(events))


def _settle(
    state: WatchState, current: Plan | None, named: Tags | InvalidPlanName | None
) -> Decision:
    """What to do on a poll that promotes nothing by a halt."""
    if state.pending:
        return CheckApplied(state.pending[0])
    if current is None:
        return Wait("no plan")
    if current.name in state.promoted:
        return Wait("promoted; waiting for the upgrade", current)
    if isinstance(named, InvalidPlanName):
        return named
    return _wait(state, current, "plan scheduled")


def on_confirmed(state: WatchState, confirm: ConfirmHalt, answer: PlanAnswer | None) -> Step:
    """Turn the re-read of `current_plan` after the halt into Promote or Wait.

    `answer` None = the re-read failed: nothing is promoted and the next poll that sees the
    halt asks again. A different plan (or none) means the plan was cancelled, replaced or
    applied between the reads: not promoted here; the next poll's `step` sees the change
    and `on_applied` settles it. Only the very same plan promotes, and marks it promoted.
    """
    plan = confirm.job.plan
    if plan.name in state.promoted:
        return Step(state, Wait("already promoted", plan))
    if answer is None:
        wait = _wait(state, plan, "halt seen; re-reading the plan failed")
        return Step(state, wait, (ChainUnavailable(),))
    if answer.plan != plan:
        wait = _wait(state, plan, "plan changed while the halt was confirmed")
        return Step(state, wait, (HaltUnconfirmed(plan, answer.plan),))
    state = attrs.evolve(state, promoted=state.promoted | {plan.name})
    return Step(state, Promote(confirm.job))


def on_applied(
    state: WatchState, check: CheckApplied, applied_height: int, *, tags: TagScheme
) -> Step:
    """Turn the `applied_plan` answer for `check.plan` into Promote or Cancelled.

    Height > 0: the chain applied the plan (our LCD missed the halt, or the daemon was down),
    so the retag is due, at the height the chain applied it. 0: cancelled or replaced.
    """
    plan = check.plan
    state = attrs.evolve(state, pending=tuple(p for p in state.pending if p.name != plan.name))
    if plan.name in state.promoted:
        return Step(state, Wait("already promoted", plan))
    if applied_height <= 0:
        return Step(state, Cancelled(plan), (PlanCancelled(plan),))
    applied = attrs.evolve(plan, height=applied_height)
    events: tuple[Event, ...] = (PlanAppliedElsewhere(plan, applied_height),)
    reason = RetagReason.CATCH_UP if check.reason == "catch-up" else RetagReason.APPLIED
    named = tags.for_plan(applied)
    if isinstance(named, InvalidPlanName):
        return Step(state, named, events)
    state = attrs.evolve(state, promoted=state.promoted | {plan.name})
    return Step(state, Promote(RetagJob(applied, named.source, named.target, reason)), events)


# --- several endpoints: a quorum of them (the evidence per endpoint: quorum.py) ----------


def step_pool(
    state: WatchState, sightings: Sequence[Sighting], at: float, *, tags: TagScheme, quorum: int
) -> Step:
    """`step` for a poll of several endpoints; with one endpoint, `step` + `on_confirmed`.

    The view (plan tracking, heights, block time, ETA) follows `lead`. The halt follows the
    rule per endpoint: plan P promotes once `quorum` distinct endpoints each showed P current
    with blocks/latest >= H and held P on their own re-read (`halt_witnesses`). A lagging
    endpoint shows no halt (it cannot trigger) and is not the lead (it cannot veto); a lying
    one alone cannot reach a quorum of 2.
    """
    result = step(state, lead(sightings, at), tags=tags)
    state, events = result.state, list(result.events)
    witnesses = halt_witnesses(state.promoted, sightings)
    for plan, endpoints in witnesses.items():
        events.append(HaltWitnessed(plan, endpoints, quorum))
    for plan, endpoints in witnesses.items():
        named = tags.for_plan(plan)
        if len(endpoints) >= quorum and isinstance(named, Tags):
            first = next(s for s in sightings if s.endpoint == endpoints[0])
            if not any(isinstance(e, HaltDetected) and e.plan == plan for e in events):
                block = first.height.block if first.height else plan.height
                app = first.height.app if first.height else None
                events.append(HaltDetected(plan, block=block, app=app))
            state = attrs.evolve(state, promoted=state.promoted | {plan.name})
            job = RetagJob(
                plan,
                named.source,
                named.target,
                RetagReason.HALT,
                halt_seen_at=at,
                chain_id=first.height.chain_id if first.height else None,
            )
            return Step(state, Promote(job), tuple(events))
    if not isinstance(result.decision, ConfirmHalt):
        return Step(state, result.decision, tuple(events))
    # The lead shows the halt, but fewer than `quorum` endpoints confirmed it.
    plan = result.decision.job.plan
    for s in sightings:
        shown = shows_halt(state.promoted, s.plan, s.height) == plan
        if shown and s.reread is not None and s.reread.plan != plan:
            events.append(HaltUnconfirmed(plan, s.reread.plan))
    if not any(s.reread is not None for s in sightings):
        events.append(ChainUnavailable())
    current = state.plan
    decision = _settle(state, current, None if current is None else tags.for_plan(current))
    if isinstance(decision, Wait):
        seen = len(witnesses.get(plan, ()))
        decision = _wait(state, plan, f"halt seen; confirmed by {seen} of {quorum} endpoints")
    return Step(state, decision, tuple(events))


def catch_up(
    state: WatchState, answer: PlanAnswer, proposals: Iterable[UpgradeProposal]
) -> CheckApplied | None:
    """With no current plan, the newest PASSED upgrade may have been applied while we were
    away: ask applied_plan about it (only the newest one; older upgrades are history)."""
    if answer.plan is not None:
        return None
    passed = [
        p for p in proposals if p.status == ProposalStatus.PASSED and scheduled(p.plan) is not None
    ]
    if not passed:
        return None
    newest = max(passed, key=lambda p: p.id)
    if newest.plan.name in state.promoted:
        return None
    return CheckApplied(newest.plan, reason="catch-up")


def view(state: WatchState) -> WatchView:
    """The watch as the published chain view shows it (see `WatchView`)."""
    plan = state.plan
    if plan is None:
        return WatchView(
            height=state.height,
            app_height=state.app_height,
            block_time=block_time(state.changes),
            promoted=state.promoted,
        )
    left, remaining = _countdown(state, plan)
    return WatchView(
        plan=plan,
        tags=state.tags,
        height=state.height,
        app_height=state.app_height,
        block_time=block_time(state.changes),
        eta=remaining,
        blocks_left=left,
        halted=state.block is not None and state.block >= plan.height,
        promoted=state.promoted,
    )


def upcoming(proposals: Iterable[UpgradeProposal], height: int) -> list[UpgradeProposal]:
    """Early warning: upgrades in voting or passed whose height is still ahead, soonest first."""
    ahead = [
        p
        for p in proposals
        if p.status in (ProposalStatus.VOTING_PERIOD, ProposalStatus.PASSED)
        and p.plan.height > height
    ]
    return sorted(ahead, key=lambda p: (p.plan.height, p.id))


# --- helpers ------------------------------------------------------------------------------


def _track(state: WatchState, current: Plan | None) -> tuple[WatchState, list[Event]]:
    """Follow the current plan from poll to poll: seen, rescheduled, gone (-> pending)."""
    events: list[Event] = []
    pending = list(state.pending)
    previous = state.plan
    rescheduled = False
    if current is not None:
        # A vanished plan is back under the same name: it was never applied (an applied name
        # cannot be scheduled again), so there is nothing to ask about it any more.
        for old in [p for p in pending if p.name == current.name]:
            pending.remove(old)
            if old != current:
                events.append(PlanRescheduled(old, current))
                rescheduled = True
    if previous is not None and previous != current:
        if current is not None and current.name == previous.name:
            events.append(PlanRescheduled(previous, current))
            rescheduled = True
        else:
            done = previous.name in state.promoted
            events.append(PlanGone(previous, replaced_by=current, already_promoted=done))
            if not done and previous not in pending:
                pending.append(previous)  # cancelled, replaced or applied: ask applied_plan
    if current is not None and current != previous and not rescheduled:
        events.append(PlanSeen(current))
    return attrs.evolve(state, plan=current, pending=tuple(pending)), events


def _halt_evidence(state: WatchState, obs: Observation) -> HaltDetected | None:
    """The rule itself: this very observation shows the plan current AND blocks/latest >= H."""
    plan = state.plan
    if plan is None or plan.name in state.promoted or obs.plan is None or obs.height is None:
        return None
    if obs.height.block < plan.height:
        return None
    app = obs.height.app if obs.height.app is not None else obs.plan.app_height
    return HaltDetected(plan, block=obs.height.block, app=app)


def _observe(state: WatchState, obs: Observation) -> WatchState:
    """Record what the view reports of `obs`, and a height change point for the block time."""
    block = None if obs.height is None else obs.height.block
    app = state.app_height
    if obs.plan is not None:  # an outage keeps the last app height known
        app = obs.height.app if obs.height and obs.height.app is not None else obs.plan.app_height
    state = attrs.evolve(state, at=obs.at, block=block, app_height=app)
    if block is not None:
        seen: int | None = block
    elif obs.plan is not None:
        seen = obs.plan.app_height
    else:
        seen = None
    if seen is None:
        return state
    before, state = state.read_at, attrs.evolve(state, read_at=obs.at)
    # Only rises count: load-balanced LCDs and the header's H-1 at a halt read lower.
    if state.height is not None and seen <= state.height:
        return state
    # The first read lands anywhere inside a block: it is no block boundary (`rose_after` is
    # None only then), so the first rise replaces it instead of pairing with it. Paired, a
    # daemon started 5.9 s into a 6 s block would learn "0.1 s per block" and announce an
    # ETA hours early until more blocks outvoted it.
    kept = state.changes if state.rose_after is not None else ()
    changes = (*kept, (obs.at, seen))[-MAX_SAMPLES:]
    return attrs.evolve(state, changes=changes, rose_after=before)


def _wait(state: WatchState, plan: Plan | None, reason: str) -> Wait:
    if plan is None:
        return Wait(reason)
    left, remaining = _countdown(state, plan)
    return Wait(reason, plan, blocks_left=left, eta=remaining)


def _countdown(state: WatchState, plan: Plan) -> tuple[int | None, float | None]:
    """(blocks left, ETA in seconds) until `plan`'s height, as of the latest observation."""
    seen = state.height
    left = None if seen is None else max(0, plan.height - seen)
    return left, None if state.at is None else eta(state, plan.height, state.at)

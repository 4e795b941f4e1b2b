"""The rule's evidence per LCD endpoint, and what a quorum of endpoints agrees on: pure.

Several endpoints (`RPC_URL` lists them) are each read as if alone (`Sighting`): the halt
counts only when ONE endpoint's own reads show it (`shows_halt`) and its own re-read holds
the same plan (`halt_witnesses`); the chain view follows the most advanced endpoint
(`lead`), so a lagging one can neither hide a plan nor trigger; `applied_by_quorum` is what
`quorum` endpoints agree `applied_plan` says. `rule.step_pool` turns these into decisions.
"""

from __future__ import annotations

from collections.abc import Iterable

from gopher_updater.model import Height, Plan, PlanAnswer
from gopher_updater.rule_records import AppliedAnswer, CheckApplied, Observation, Sighting


def shows_halt(
    promoted: frozenset[str], answer: PlanAnswer | None, height: Height | None
) -> Plan | None:
    """The rule on ONE endpoint's reads: its current_plan holds an unpromoted plan P and its
    blocks/latest is >= P's height. Then that same endpoint's current_plan is read again."""
    plan = None if answer is None else answer.plan
    if plan is None or plan.name in promoted or height is None or height.block < plan.height:
        return None
    return plan


def halt_witnesses(
    promoted: frozenset[str], sightings: Iterable[Sighting]
) -> dict[Plan, tuple[str, ...]]:
    """Per plan, the distinct endpoints whose own reads showed its halt, confirmed by their
    own re-read still holding the very same plan (the time order of the single-LCD rule)."""
    found: dict[Plan, list[str]] = {}
    for s in sightings:
        plan = shows_halt(promoted, s.plan, s.height)
        if plan is None or s.reread is None or s.reread.plan != plan:
            continue
        names = found.setdefault(plan, [])
        if s.endpoint not in names:
            names.append(s.endpoint)
    return {plan: tuple(names) for plan, names in found.items()}


def lead(sightings: Iterable[Sighting], at: float) -> Observation:
    """The chain view of a poll: the most advanced endpoint that answered current_plan.

    Highest `reached` wins (at the same number a block height read beats an app height, then
    an answer showing a plan, then the first listed). A lagging endpoint is never the lead,
    so it cannot hide a plan or a height; none answering is an outage.
    """
    best: Sighting | None = None
    for s in sightings:
        if s.plan is None:
            continue
        if best is None or _rank(s) > _rank(best):
            best = s
    if best is None:
        return Observation(None, None, at)
    return Observation(best.plan, best.height, at)


def _rank(s: Sighting) -> tuple[int, bool, bool]:
    # At the same height, one still showing a plan wins: hiding a plan would cost an idle
    # interval of watching, keeping one a poll or two (promoting it still takes the rule).
    has_plan = s.plan is not None and s.plan.plan is not None
    return (s.reached if s.reached is not None else -1, s.height is not None, has_plan)


def applied_by_quorum(
    check: CheckApplied, answers: Iterable[AppliedAnswer], *, quorum: int, floor: int | None
) -> int | None:
    """What `quorum` distinct endpoints agree `applied_plan/{name}` is; None: ask again.

    A height > 0 counts from any endpoint. A 0 ("never applied") counts only from an
    endpoint that no longer shows the plan current and has come at least as far as the
    chain view (`floor`, the highest height seen): a lagging one may not know yet. Should
    both reach the quorum, the applied height wins (it can only be the chain's record).
    """
    votes: dict[int, set[str]] = {}
    for a in answers:
        if a.height <= 0:
            current = a.sighting.plan
            reached = a.sighting.reached
            if current is None or reached is None or (floor is not None and reached < floor):
                continue
            if current.plan is not None and current.plan.name == check.plan.name:
                continue
        votes.setdefault(max(a.height, 0), set()).add(a.endpoint)
    agreed = [height for height, names in votes.items() if len(names) >= quorum]
    return max(agreed) if agreed else None

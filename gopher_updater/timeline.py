"""The upgrade's timeline after the halt, as a pure function over frozen values.

    halted ──▶ promoted ──▶ nudged ──▶ node_upgraded ──▶ resumed
       └──────────── stuck (no block above H within UPGRADE_STUCK_AFTER) ──┘

- `halted`: block H seen with the plan current (the poll that confirmed the halt; a
  restarted daemon sees it at its first poll, and the follower moves it back to block H's
  own header time when it reads block H);
- `promoted`: the retag settled (`promoted`, `already_promoted`, or `would_promote` in
  DRY_RUN);
- `nudged`: the first Flux Receiver call accepted (only with a receiver configured);
- `node_upgraded`: the LCD's node answers `applied_plan/<name>` > 0: it runs the new binary;
- `resumed`: a block above H seen: the network runs again (at block H+1's own time when
  the read shows H+1, else when read);
- `stuck`: not resumed within `stuck_after` seconds of the halt; it clears itself when the
  chain resumes later.

Each state is reached at most once and reported once (`advance` returns the marks it added,
for the driver to log). The current state is `stuck` while stuck, else the furthest state of
the progression reached: observations may come out of order (an operator upgrades the node
before the Flux nudge is accepted) without the state going backwards.

`advance(timeline, observation) -> (timeline, marks)` is all there is: no I/O, no clock
(times are unix seconds given by the driver, `follower.py`), no logging.
"""

from __future__ import annotations

import datetime
import enum
from typing import Any

import attrs


class Stage(enum.StrEnum):
    HALTED = "halted"
    PROMOTED = "promoted"
    NUDGED = "nudged"
    NODE_UPGRADED = "node_upgraded"
    RESUMED = "resumed"
    STUCK = "stuck"


#: The progression, in order (stuck is beside it).
PROGRESSION = (Stage.HALTED, Stage.PROMOTED, Stage.NUDGED, Stage.NODE_UPGRADED, Stage.RESUMED)


@attrs.frozen
class Mark:
    """One transition: the state reached and when (unix seconds)."""

    state: Stage
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state.value, "at": self.at}


# --- observations -------------------------------------------------------------------------


@attrs.frozen
class Halted:
    at: float


@attrs.frozen
class Promoted:
    at: float
    outcome: str  # promoted, already_promoted or would_promote
    delay: float | None = None  # block H seen -> target written (only when we wrote it)


@attrs.frozen
class Nudged:
    at: float


@attrs.frozen
class ChainRead:
    """One read by the follower. None: not asked, or the request failed."""

    at: float
    block: int | None = None
    applied: int | None = None
    block_time: float | None = None  # unix time in the header of `block`


@attrs.frozen
class Tick:
    """Only the clock moved (a failed read still counts toward `stuck`)."""

    at: float


Observation = Halted | Promoted | Nudged | ChainRead | Tick


# --- the timeline -------------------------------------------------------------------------


@attrs.frozen
class Timeline:
    plan: str
    height: int
    stuck_after: float
    started_at: float  # unix: when this process started following it
    marks: tuple[Mark, ...] = ()
    stuck: bool = False
    outcome: str | None = None
    promotion_delay: float | None = None

    def reached(self, stage: Stage) -> bool:
        return any(m.state is stage for m in self.marks)

    def at(self, stage: Stage) -> float | None:
        return next((m.at for m in self.marks if m.state is stage), None)

    @property
    def state(self) -> Stage | None:
        if self.stuck:
            return Stage.STUCK
        furthest = [s for s in PROGRESSION if self.reached(s)]
        return furthest[-1] if furthest else None

    @property
    def done(self) -> bool:
        return self.reached(Stage.RESUMED)

    @property
    def halt_duration(self) -> float | None:
        """Halt -> resume, once resumed (None when the halt was never seen)."""
        halted, resumed = self.at(Stage.HALTED), self.at(Stage.RESUMED)
        return None if halted is None or resumed is None else max(0.0, resumed - halted)

    def halted_for(self, now: float) -> float:
        """Seconds since the halt (or, not seen, since we started following)."""
        since = self.at(Stage.HALTED)
        return now - (since if since is not None else self.started_at)

    def to_json(self) -> dict[str, Any]:
        state = self.state
        return {
            "plan": self.plan[:200],
            "height": self.height,
            "state": None if state is None else state.value,
            "events": [m.to_json() for m in self.marks],
            "outcome": self.outcome,
            "promotion_delay_seconds": self.promotion_delay,
            "halt_duration_seconds": self.halt_duration,
        }


def start(plan: str, height: int, *, stuck_after: float, at: float) -> Timeline:
    return Timeline(plan=plan, height=height, stuck_after=stuck_after, started_at=at)


def advance(timeline: Timeline, obs: Observation) -> tuple[Timeline, tuple[Mark, ...]]:
    """Take one observation; return the new timeline and the marks it added, in order."""
    tl, marks = timeline, list[Mark]()
    if isinstance(obs, Halted):
        tl = _mark(tl, Stage.HALTED, obs.at, marks)
    elif isinstance(obs, Promoted):
        if not tl.reached(Stage.PROMOTED):
            tl = attrs.evolve(tl, outcome=obs.outcome, promotion_delay=obs.delay)
        tl = _mark(tl, Stage.PROMOTED, obs.at, marks)
    elif isinstance(obs, Nudged):
        tl = _mark(tl, Stage.NUDGED, obs.at, marks)
    elif isinstance(obs, ChainRead):
        tl = _read(tl, obs, marks)
    if not tl.done and not tl.stuck and tl.halted_for(obs.at) >= tl.stuck_after:
        tl = attrs.evolve(tl, stuck=True, marks=(*tl.marks, Mark(Stage.STUCK, obs.at)))
        marks.append(tl.marks[-1])
    return tl, tuple(marks)


def _read(tl: Timeline, obs: ChainRead, marks: list[Mark]) -> Timeline:
    if obs.block is not None and obs.block == tl.height and obs.block_time is not None:
        # Block H's own time is the halt: earlier than we saw it if we started late.
        halted = tl.at(Stage.HALTED)
        if halted is None:
            tl = _mark(tl, Stage.HALTED, min(obs.block_time, obs.at), marks)
        elif obs.block_time < halted:
            moved = tuple(
                Mark(m.state, obs.block_time) if m.state is Stage.HALTED else m for m in tl.marks
            )
            tl = attrs.evolve(tl, marks=moved)
    if obs.applied is not None and obs.applied > 0:
        tl = _mark(tl, Stage.NODE_UPGRADED, obs.at, marks)
    if obs.block is not None and obs.block > tl.height:
        # A block above H: the chain runs the new binary, our LCD's node included. Block
        # H+1's own time is the resume (a read lands up to a cadence later).
        resumed = obs.at
        if obs.block == tl.height + 1 and obs.block_time is not None:
            resumed = min(obs.block_time, obs.at)
        tl = _mark(tl, Stage.NODE_UPGRADED, obs.at, marks)
        tl = _mark(tl, Stage.RESUMED, resumed, marks)
        tl = attrs.evolve(tl, stuck=False)
    return tl


def _mark(tl: Timeline, stage: Stage, at: float, marks: list[Mark]) -> Timeline:
    if tl.reached(stage):
        return tl
    mark = Mark(stage, at)
    marks.append(mark)
    return attrs.evolve(tl, marks=(*tl.marks, mark))


def parse_block_time(text: str | None) -> float | None:
    """RFC 3339 (nanoseconds allowed) -> unix seconds; None when absent or unreadable."""
    if not text:
        return None
    main, _, rest = text.partition(".")
    if rest:  # keep at most microseconds, and the zone
        digits = len(rest) - len(rest.lstrip("0123456789"))
        rest = "." + rest[: min(digits, 6)] + rest[digits:]
    try:
        parsed = datetime.datetime.fromisoformat((main + rest).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()

"""When to poll and what to ask: block time, ETA, the halt window and the poll delay.

Pure functions over the rule's `WatchState` (no I/O, no clock, no logging), split from
`rule.py` because they decide only how soon and how often the chain is read, never whether
a plan is promoted: the halt protocol in `rule.py` stays the one place that decides that.
Wrong numbers here cost latency or requests, not safety.

- `block_time`: seconds per block from the height change points `rule` records
  (`MAX_SAMPLES` of them); `eta`: seconds until a height.
- `needs_latest_block`: whether a poll also asks blocks/latest (only near H, `NEAR_BLOCKS`).
- `halt_window` and `suggested_delay`: the next poll delay; inside the window around H, the
  fixed halt cadence.

`rule.py` imports `block_time` and `eta` for its view; `WatchState` is imported here for
typing only, so at run time this module imports nothing from the package.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gopher_updater.model import PlanAnswer
    from gopher_updater.rule_records import WatchState

#: Height change points kept for the block-time estimate.
MAX_SAMPLES = 32
#: Fetch blocks/latest once the header says the chain is this close to H.
NEAR_BLOCKS = 3
#: The halt window (`halt_window`): it opens this fraction of a block early (block times
#: vary), closes this many block times after H was due (a stalled chain), and needs this
#: many height change points (block boundaries: two whole blocks) first.
WINDOW_EARLY = 0.2
STALL_BLOCKS = 3
LEARN_CHANGES = 3
#: Seconds between polls while the block time is learned, far from H.
LEARN_CADENCE = 1.0


def needs_latest_block(
    state: WatchState, answer: PlanAnswer, *, near_blocks: int = NEAR_BLOCKS
) -> bool:
    """Whether this poll must also ask blocks/latest (~4 KB) after current_plan.

    Only while an unpromoted plan is current and the header height is within `near_blocks`
    of H (at the halt the header says H-1), or the node sends no height header at all.
    """
    plan = answer.plan
    if plan is None or plan.name in state.promoted:
        return False
    return answer.app_height is None or answer.app_height >= plan.height - near_blocks


def block_time(changes: Sequence[tuple[float, int]], *, window: int = 20) -> float | None:
    """Seconds per block: the median over the last `window` pairs of height change points.

    Each pair (t1, h1) -> (t2, h2) gives (t2 - t1) / (h2 - h1). Using change points rather
    than every poll keeps fast polling from reading "1 block per poll interval"; the median
    shrugs off an outage or a stalled chain spanning one pair.
    """
    recent = list(changes)[-(window + 1) :]
    rates = [
        (t2 - t1) / (h2 - h1) for (t1, h1), (t2, h2) in pairwise(recent) if h2 > h1 and t2 > t1
    ]
    return statistics.median(rates) if rates else None


def eta(state: WatchState, height: int, now: float) -> float | None:
    """Seconds until block `height` is expected; 0 once it was seen; None without estimate.

    Time spent since the last height change only shortens the block in progress, so a
    stalled chain far from H does not count down to zero.
    """
    if not state.changes:
        return None
    seen_at, seen = state.changes[-1]
    if seen >= height:
        return 0.0
    per_block = block_time(state.changes)
    if per_block is None:
        return None
    left = height - seen
    return max((left - 1) * per_block, left * per_block - (now - seen_at))


def halt_window(state: WatchState, height: int) -> tuple[float, float] | None:
    """(opens, closes): when to poll at the fixed halt cadence for block `height`.

    Block `height` cannot come before `rose_after` (the read before the current height was
    first seen) plus the blocks left, each at least `1 - WINDOW_EARLY` block times (jitter).
    Once seen, the window stays open while the halt waits for its confirmation. It closes
    `STALL_BLOCKS` block times after the latest expected arrival: the chain stalled and
    polling falls back to the slower cadence. None until the block time is learned
    (`LEARN_CHANGES` height change points).
    """
    per_block = block_time(state.changes)
    if len(state.changes) < LEARN_CHANGES or per_block is None:
        return None
    seen_at, seen = state.changes[-1]
    left = height - seen
    if left <= 0:
        return -math.inf, seen_at + STALL_BLOCKS * per_block
    after = seen_at - per_block
    if state.rose_after is not None:
        after = max(after, state.rose_after)
    opens = after + left * per_block * (1 - WINDOW_EARLY)
    return opens, seen_at + (left + STALL_BLOCKS) * per_block


def suggested_delay(
    state: WatchState,
    now: float,
    *,
    idle: float,
    fast: float,
    near_blocks: int = NEAR_BLOCKS,
    window: float | None = None,
) -> float:
    """Next poll delay: `fast` near H or with an applied_plan question open, `idle` with no
    plan, half the ETA in between. (The daemon backs off if applied_plan keeps failing.)

    With `window` (a fixed cadence, e.g. 0.15 s): exactly that inside `halt_window`, so the
    halt is seen within `window` whatever the block time; up to the window's opening, polls
    are spaced to land on it; and while the block time is still being learned, far from H,
    at most one poll a second (`LEARN_CADENCE`) rather than `fast`.
    """
    plan = state.plan
    if state.pending:
        # A vanished plan may have been applied elsewhere: then nodes wait on the retag.
        return fast
    if plan is None or plan.name in state.promoted:
        return idle
    seen = state.height
    if window is not None:
        near = seen is not None and seen >= plan.height - near_blocks
        span = halt_window(state, plan.height)
        if span is None and not near:
            return min(idle, max(fast, LEARN_CADENCE))
        if span is not None and now <= span[1]:
            opens = span[0]
            if now >= opens:
                return min(window, idle)
            if near:
                return min(idle, max(min(window, fast), min(opens - now, fast)))
            half = (eta(state, plan.height, now) or 0.0) / 2
            return min(idle, max(min(window, fast), min(opens - now, half)))
    if seen is not None and seen >= plan.height - near_blocks:
        return fast
    remaining = eta(state, plan.height, now)
    if remaining is None:
        return fast
    return min(idle, max(fast, remaining / 2))

"""What the announcer remembers of each plan, and when it is due to say more: pure.

What is told, once per plan (README "Notifications"):

- `scheduled` waits for the ETA, the source tag's preflight answer and the chain id, at most
  `SCHEDULED_WAIT` seconds, then goes out with what is known; a plan first seen already
  halted gets none (the halt says it all). `source_missing` `first` follows when the image
  is missing then or goes missing later, before the halt; `halt` when the retag finds it
  missing at the halt; `1h` with the T-1h reminder when still missing.
- `reminder` at T-24h and T-1h, only for thresholds the ETA was beyond when the plan was
  told (first seen at T-30m: none; at T-2h: only the 1h one; so a restart never repeats a
  reminder). When both fall due at once (the ETA jumped), only the nearer one is sent.
- `halted` is held back until the retag's first answer: `already_promoted` means another
  process (this one before a restart) promoted and told it, so this one tells no halted,
  promoted or nudged, and of node_upgraded, resumed and stuck only the transitions it sees
  happen itself (`live`: not already true at its first look at the chain, which the process
  before it may have told). Otherwise `halted` goes out just before `promoted`, `conflict`,
  `source_missing` or at a registry error; timeline marks seen meanwhile wait behind it.
- `cancelled` / `replaced` only once `applied_plan` said 0, and only for plans seen here.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal, Protocol

import attrs

from gopher_updater import timeline as tl
from gopher_updater.model import Height, Plan
from gopher_updater.notify import EventType, NotifyEvent
from gopher_updater.rule_records import Tags
from gopher_updater.views import ChainView

TICK = 30.0  # seconds between reminder checks
SETTLE = 0.5  # while a `scheduled` waits for its ETA, preflight answer and chain id
SCHEDULED_WAIT = 10.0  # then it goes out with what is known
#: (occurrence, seconds before H), nearest first.
REMINDERS = (("1h", 3600.0), ("24h", 86400.0))
MAX_PLANS = 32
MAX_DIGESTS = 64

#: The timeline's marks told as they come (`halted` and `promoted` have their own facts).
MARKS = {
    tl.Stage.NUDGED: EventType.NUDGED,
    tl.Stage.NODE_UPGRADED: EventType.NODE_UPGRADED,
    tl.Stage.RESUMED: EventType.RESUMED,
    tl.Stage.STUCK: EventType.STUCK,
}
#: What a daemon that found the upgrade already promoted still tells: transitions it saw live.
LIVE_AFTER_RESTART = frozenset({EventType.NODE_UPGRADED, EventType.RESUMED, EventType.STUCK})


class Notifies(Protocol):
    def notify_nowait(self, event: NotifyEvent) -> bool: ...


class ChainIdReader(Protocol):
    async def latest_height(self) -> Height: ...


@attrs.define
class News:
    """What this process told (or holds back) about one plan, keyed by its name."""

    plan: Plan
    tags: Tags | None  # None: the name can't become a tag (invalid_plan says so)
    seen_at: float  # trio time of plan_seen
    scheduled: Literal["pending", "told", "dropped"] = "pending"
    baseline: float | None = None  # the ETA when the plan was told: which reminders it allows
    reminders: set[str] = attrs.Factory(set)
    missing_told: bool = False
    replaced_by: Plan | None = None
    held_halt: NotifyEvent | None = None
    #: Timeline marks seen while `halted` waits for the retag's answer, with their `live`.
    held_marks: list[tuple[NotifyEvent, bool]] = attrs.Factory(list)
    quiet: bool = False  # found already promoted: whoever promoted told the rest


def due_reminder(baseline: float, sent: Collection[str], eta: float) -> str | None:
    """The reminder due now, if any: the nearest threshold crossed that `baseline` allowed."""
    for occurrence, before in REMINDERS:
        if baseline > before >= eta:
            return None if occurrence in sent else occurrence
    return None


def eta_for(view: ChainView, plan: Plan, now: float) -> float | None:
    """Seconds until `plan`'s height from the poller's last published view, aged to `now`."""
    if view.last_poll_ok is None:
        return None
    watch, since = view.watch, max(0.0, now - view.last_poll_ok)
    if watch.plan == plan and watch.eta is not None:
        return max(0.0, watch.eta - since)
    if watch.block_time is None or watch.height is None:
        return None
    return max(0.0, (plan.height - watch.height) * watch.block_time - since)

"""The promotion rule's records: frozen values, no behaviour beyond naming tags.

What the rule reads (`Observation`; per endpoint `Sighting` and `AppliedAnswer`), what it
keeps between polls (`WatchState`), what it publishes (`WatchView`), what it decides
(`Decision`) and what it reports (`Event`, for logs only). `TagScheme.for_plan` is the one
place a plan name becomes the source and target tags. The rule itself is `rule.py`; the
evidence per endpoint, `quorum.py`.
"""

from __future__ import annotations

from typing import Literal

import attrs

from gopher_updater.model import Height, Plan, PlanAnswer, RetagJob, is_valid_tag

# --- inputs and state ---------------------------------------------------------------------


@attrs.frozen
class Observation:
    """One poll. `plan` None = current_plan failed (an outage: never promotes).

    `height` None = blocks/latest was not asked or failed. `at` = monotonic seconds.
    """

    plan: PlanAnswer | None
    height: Height | None
    at: float


@attrs.frozen
class Tags:
    source: str
    target: str


@attrs.frozen
class WatchState:
    plan: Plan | None = None  # the current plan as last seen
    promoted: frozenset[str] = frozenset()  # plan names already promoted: at most once each
    pending: tuple[Plan, ...] = ()  # vanished plans whose applied_plan is still to be asked
    #: (at, height) each time a higher chain height was first seen, oldest first; until the
    #: first rise, only the first read (no block boundary: block time needs two rises).
    changes: tuple[tuple[float, int], ...] = ()
    #: The latest observation as far as the view needs it: when it was made, the block
    #: height it read from blocks/latest (None: not asked or failed) and the last app height
    #: any answer carried.
    at: float | None = None
    block: int | None = None
    app_height: int | None = None
    tags: Tags | None = None  # the current plan's tags; None without one or if invalid
    #: When a height was last read, and the read before the latest rise: the current height
    #: arrived after `rose_after` (a lower bound for the halt window; None: unknown).
    read_at: float | None = None
    rose_after: float | None = None

    @property
    def height(self) -> int | None:
        return self.changes[-1][1] if self.changes else None


@attrs.frozen
class TagScheme:
    """How a plan name becomes the source and target tags; built once from the config.

    Either prefix may be empty (bare `v1.2.3` source tags). The only place tags are built.
    """

    source_prefix: str
    target_prefix: str

    def for_plan(self, plan: Plan) -> Tags | InvalidPlanName:
        """The tags for `plan`, or why its name cannot become a tag (never sanitised)."""
        if not plan.name:  # the SDK refuses empty names; "release-" alone is not this plan
            return InvalidPlanName(plan, "empty plan name")
        tags = Tags(self.source_prefix + plan.name, self.target_prefix + plan.name)
        for tag in (tags.source, tags.target):
            if not is_valid_tag(tag):
                shown = tag if len(tag) <= 80 else tag[:77] + "..."
                return InvalidPlanName(plan, f"{shown!r} is not a valid image tag")
        return tags


@attrs.frozen
class WatchView:
    """What the watch knows after a poll, as the rule computed it (see `view`).

    The poller publishes it unchanged; nothing outside the rule re-derives these facts.
    `eta` and `blocks_left` refer to the current plan; `tags` is None without a plan or when
    its name cannot become a tag; `halted` = the latest observation read a block >= H.
    """

    plan: Plan | None = None
    tags: Tags | None = None
    height: int | None = None
    app_height: int | None = None
    block_time: float | None = None
    eta: float | None = None
    blocks_left: int | None = None
    halted: bool = False
    promoted: frozenset[str] = frozenset()


# --- decisions ----------------------------------------------------------------------------


@attrs.frozen
class Wait:
    reason: str
    plan: Plan | None = None
    blocks_left: int | None = None
    eta: float | None = None  # seconds until `plan.height`, when there is an estimate


@attrs.frozen
class Promote:
    job: RetagJob


@attrs.frozen
class ConfirmHalt:
    """The halt was seen: read `current_plan` once more, then call `on_confirmed`."""

    job: RetagJob


@attrs.frozen
class CheckApplied:
    """Ask `applied_plan/{plan.name}`, then call `on_applied` with the answer."""

    plan: Plan
    #: "gone" (vanished while watched) or "catch-up" (start-up)
    reason: Literal["gone", "catch-up"] = "gone"


@attrs.frozen
class InvalidPlanName:
    plan: Plan
    reason: str


@attrs.frozen
class Cancelled:
    plan: Plan


Decision = Wait | Promote | ConfirmHalt | CheckApplied | InvalidPlanName | Cancelled


# --- events (for logs; they never drive anything) -----------------------------------------


@attrs.frozen
class PlanSeen:
    plan: Plan


@attrs.frozen
class PlanRescheduled:
    old: Plan
    new: Plan


@attrs.frozen
class PlanGone:
    plan: Plan
    replaced_by: Plan | None
    already_promoted: bool


@attrs.frozen
class HaltDetected:
    plan: Plan
    block: int
    app: int | None


@attrs.frozen
class HaltUnconfirmed:
    """The re-read after the halt showed another plan (or none): not promoted."""

    plan: Plan
    current: Plan | None


@attrs.frozen
class PlanCancelled:
    plan: Plan


@attrs.frozen
class PlanAppliedElsewhere:
    plan: Plan
    applied_height: int


@attrs.frozen
class ChainUnavailable:
    pass


@attrs.frozen
class HaltWitnessed:
    """Endpoints (labels) that each showed the halt of `plan` and held it on their re-read;
    `quorum` of them are needed. Emitted whenever the halt is seen, promoted or not."""

    plan: Plan
    endpoints: tuple[str, ...]
    quorum: int


Event = (
    PlanSeen
    | PlanRescheduled
    | PlanGone
    | HaltDetected
    | HaltUnconfirmed
    | HaltWitnessed
    | PlanCancelled
    | PlanAppliedElsewhere
    | ChainUnavailable
)


# --- several endpoints: what one endpoint read in one poll --------------------------------


@attrs.frozen
class Sighting:
    """One endpoint's reads in one poll, in the order they were made.

    `plan`: current_plan (None = failed). `height`: blocks/latest (None = not asked or
    failed). `reread`: current_plan once more, asked only when `shows_halt` held for the
    two reads before it (None = not asked or failed). `endpoint` is its label.
    """

    endpoint: str
    plan: PlanAnswer | None
    height: Height | None = None
    reread: PlanAnswer | None = None

    @property
    def reached(self) -> int | None:
        """How far this endpoint's chain has come: its block height, else its app height."""
        if self.height is not None:
            return self.height.block
        return None if self.plan is None else self.plan.app_height


@attrs.frozen
class AppliedAnswer:
    """One endpoint's `applied_plan/{name}` (0: never applied, as far as it knows), with its
    own reads of the same poll (what it shows as current, how far it has come)."""

    endpoint: str
    height: int
    sighting: Sighting

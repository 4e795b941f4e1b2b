"""What each task publishes: the frozen view records, and the `Wakeup` signal between tasks.

One owner per fact. Each task keeps its own record, changes it only from its own code, and
publishes it as a frozen view; nobody else writes it (the model is a trio channel's
`statistics()`: the owner mutates privately, readers get a value):

    task              object          publishes        owns
    chain poller      Poller          ChainView        the rule's watch, poll health, invalid names
                                                       (+ LcdView: each LCD endpoint's health)
    governance reader Governance      GovernanceView   proposals, upcoming upgrades
    registry watch    RegistryWatch   RegistryView     push credentials, source-tag preflight
    retag worker      RetagWorker     PromotionsView   last promotion, promotion problems
    upgrade follower  Follower        UpgradeView      the newest upgrade's timeline

Standing problems are `Problems` kept by each owner and keyed by what they are about (a plan
name), so no writer can clear another's. These records are split from `state.py`, which
reads them all at one instant and assembles `/status` and `/readyz`: the tasks import only
what they publish or read here, never the assembly.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, TypeVar

import attrs
import trio

from gopher_updater.manifest import Outcome
from gopher_updater.model import Plan, RetagReason, UpgradeProposal
from gopher_updater.rule_records import WatchView
from gopher_updater.timeline import Timeline

V_co = TypeVar("V_co", covariant=True)


class Publishes(Protocol[V_co]):
    """A task object that publishes a frozen view of what it owns."""

    @property
    def view(self) -> V_co: ...


@attrs.frozen
class Problems:
    """One owner's standing problems, keyed by what they are about (e.g. a plan name).

    For humans (`/status`, `/readyz`'s body); reported, never acted on.
    """

    items: tuple[tuple[str, str], ...] = ()
    #: (about, kind) for the items reported with a kind (see `PROBLEM_KINDS`).
    kinds: tuple[tuple[str, str], ...] = ()

    def report(self, about: str, text: str, kind: str | None = None) -> Problems:
        kinds = tuple((k, v) for k, v in self.kinds if k != about)
        return Problems(
            (*((k, v) for k, v in self.items if k != about), (about, text)),
            kinds if kind is None else (*kinds, (about, kind)),
        )

    def clear(self, *about: str) -> Problems:
        return Problems(
            tuple((k, v) for k, v in self.items if k not in about),
            tuple((k, v) for k, v in self.kinds if k not in about),
        )

    def only(self, keep: Collection[str]) -> Problems:
        return Problems(
            tuple((k, v) for k, v in self.items if k in keep),
            tuple((k, v) for k, v in self.kinds if k in keep),
        )

    def kind_of(self, about: str, default: str) -> str:
        return next((v for k, v in self.kinds if k == about), default)

    @property
    def summary(self) -> str | None:
        return "; ".join(text for _, text in self.items) or None


# --- the published views ------------------------------------------------------------------

# Each RPC_URL endpoint's health, published with the ChainView.


@attrs.frozen
class LcdEndpointView:
    """One LCD endpoint as the pool last saw it. `label` is `scheme://host:port` only."""

    label: str
    up: bool | None = None  # None: not asked yet
    height: int | None = None  # the highest it showed (block, else app height)
    last_ok: float | None = None  # trio.current_time() of its last answer
    last_ok_unix: float | None = None
    last_error: str | None = None
    failures: int = 0  # consecutive

    def fresh(self, now: float, within: float) -> bool:
        return (
            self.last_ok is not None
            and now - self.last_ok <= within
            and self.failures < ChainView.MAX_POLL_FAILURES
        )

    def to_json(self, top: int | None) -> dict[str, Any]:
        return {
            "endpoint": self.label,
            "up": self.up,
            "height": self.height,
            "lag": None if top is None or self.height is None else top - self.height,
            "last_ok_unix": self.last_ok_unix,
            "last_error": self.last_error,
            "failures": self.failures,
        }


@attrs.frozen
class LcdView:
    """Every endpoint of `RPC_URL`, and how many must agree (`RPC_QUORUM`)."""

    endpoints: tuple[LcdEndpointView, ...] = ()
    quorum: int = 1

    def fresh(self, now: float, within: float) -> int:
        return sum(e.fresh(now, within) for e in self.endpoints)

    def to_json(self) -> list[dict[str, Any]]:
        heights = [e.height for e in self.endpoints if e.height is not None]
        top = max(heights) if heights else None
        return [e.to_json(top) for e in self.endpoints]


@attrs.frozen
class ChainView:
    """Published by the poller after every poll. `watch` is the rule's own `WatchView`."""

    #: Consecutive failed polls after which the chain counts as down even inside the window:
    #: one reset is noise, three in a row is an outage.
    MAX_POLL_FAILURES: ClassVar[int] = 3

    fresh_within: float  # a poll older than this makes the daemon unready
    watch: WatchView = attrs.Factory(WatchView)
    last_poll_ok: float | None = None  # trio.current_time() of the last good poll
    last_poll_ok_unix: float | None = None
    last_error: str | None = None
    poll_failures: int = 0  # consecutive failed polls
    problems: Problems = attrs.Factory(Problems)  # invalid plan names, keyed by plan name
    lcd: LcdView = attrs.Factory(LcdView)  # each endpoint's health

    @staticmethod
    def fresh_window(poll_interval: float) -> float:
        return max(3 * poll_interval, 30.0)

    def health(self, now: float) -> tuple[bool, str | None]:
        """(ok, why not): polled successfully within the window, and not failing repeatedly."""
        ok = (
            self.last_poll_ok is not None
            and now - self.last_poll_ok <= self.fresh_within
            and self.poll_failures < self.MAX_POLL_FAILURES
        )
        error = self.last_error
        if not ok and error is None:
            error = (
                "no successful poll yet"
                if self.last_poll_ok is None
                else f"no successful poll for {now - self.last_poll_ok:.0f}s"
            )
        # And at least RPC_QUORUM endpoints answering recently.
        fresh = self.lcd.fresh(now, self.fresh_within)
        if ok and self.lcd.endpoints and fresh < self.lcd.quorum:
            ok = False
            total, quorum = len(self.lcd.endpoints), self.lcd.quorum
            error = f"{fresh} of {total} LCD endpoints fresh, RPC_QUORUM is {quorum}"
        return ok, error


@attrs.frozen
class GovernanceView:
    """Published by the governance reader after every listing."""

    proposals: tuple[UpgradeProposal, ...] | None = None  # last listing (None: none yet)
    upcoming: tuple[UpgradeProposal, ...] = ()  # voting or passed, above the chain height
    last_error: str | None = None


@attrs.frozen
class Preflight:
    """Does the source tag for a plan exist yet? Checked ahead of the height, by HEAD."""

    source_tag: str
    present: bool | None = None
    digest: str | None = None
    checked_at: float | None = None  # unix time
    error: str | None = None
    upgrade: str | None = None  # "scheduled" (the current plan's) or "upcoming" (governance)


def _read_only(entries: Mapping[str, Preflight]) -> Mapping[str, Preflight]:
    return MappingProxyType(dict(entries))


@attrs.frozen
class RegistryView:
    """Published by the registry watch after every credential check and preflight HEAD."""

    ok: bool | None = None  # push credentials accepted at the last check (None: not yet)
    error: str | None = None
    checked_unix: float | None = None
    preflight: Mapping[str, Preflight] = attrs.field(factory=dict, converter=_read_only)


@attrs.frozen
class Promotion:
    """How a retag job ended (or, source missing or failing, how it stands)."""

    plan: Plan
    reason: RetagReason
    outcome: Outcome
    source_tag: str
    target_tag: str
    source_digest: str | None
    previous_target_digest: str | None
    dry_run: bool
    at_unix: float = attrs.field(factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "source_tag": self.source_tag,
            "target_tag": self.target_tag,
            "source_digest": self.source_digest,
            "previous_target_digest": self.previous_target_digest,
            "dry_run": self.dry_run,
            "at_unix": self.at_unix,
            "plan": self.plan.name[:200],
            "height": self.plan.height,
            "reason": self.reason.value,
        }


@attrs.frozen
class PromotionsView:
    """Published by the retag worker whenever a job's outcome or problem changes."""

    last: Promotion | None = None  # the last settled promotion (or conflict)
    problems: Problems = attrs.Factory(Problems)  # conflict, source missing, failing: by plan

    @property
    def last_promotion(self) -> dict[str, Any] | None:
        return None if self.last is None else self.last.to_json()

    @property
    def problem(self) -> str | None:
        return self.problems.summary


# --- after the retag ----------------------------------------------------------------------


@attrs.frozen
class UpgradeView:
    """Published by the upgrade follower: the newest upgrade's timeline (None: none yet)."""

    timeline: Timeline | None = None


# --- between tasks ------------------------------------------------------------------------


class Wakeup:
    """A re-armable wake-up: one task pokes it to cut another's sleep short.

    The poller and the governance reader poke the registry watch's (a new plan or proposal
    to preflight); the governance reader pokes the poller's (start-up catch-up can run).
    A signal, not state: it carries nothing and is never read by the ops endpoints.
    """

    def __init__(self) -> None:
        self._event = trio.Event()

    def poke(self) -> None:
        self._event.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or less if poked meanwhile."""
        with trio.move_on_after(seconds):
            await self._event.wait()
        self._event = trio.Event()

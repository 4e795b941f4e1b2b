"""How `/status` and `/readyz` assemble what the tasks published (`views.py`).

`Views` holds the publishers; `Views.snapshot()` reads all their views at one instant into a
`Snapshot`, and `readiness` and `status` are pure functions of that `Snapshot`. That is what
makes a probe free: it reports published values and never causes a chain or registry
request itself. The records themselves, and who owns each, are in `views.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from gopher_updater.flux_status import NudgeSnapshot
from gopher_updater.model import UpgradeProposal
from gopher_updater.notify_status import NotifierStatus
from gopher_updater.views import (
    ChainView,
    GovernanceView,
    PromotionsView,
    Publishes,
    RegistryView,
    UpgradeView,
)

#: `gopher_updater_problem{kind}` (metrics.PROBLEM_KINDS): conflict, invalid_plan_name,
#: source_missing, promotion_error.
#: The kind of a problem reported without one, by owner (the poller reports invalid names).
_DEFAULT_KIND = {"chain": "invalid_plan_name", "promotions": "promotion_error"}


# --- assembly for the ops endpoints -------------------------------------------------------


@attrs.frozen
class Snapshot:
    chain: ChainView
    governance: GovernanceView
    registry: RegistryView
    promotions: PromotionsView
    # -- after the retag
    upgrade: UpgradeView = attrs.Factory(UpgradeView)
    flux: NudgeSnapshot | None = None  # None: no Flux receiver configured
    # -- notifications: never part of readiness
    notifications: NotifierStatus | None = None  # None: no notification channel

    @property
    def problem_kinds(self) -> frozenset[str]:
        """The kinds of the standing problems (`PROBLEM_KINDS`)."""
        owners = (("chain", self.chain.problems), ("promotions", self.promotions.problems))
        return frozenset(
            found.kind_of(about, _DEFAULT_KIND[owner])
            for owner, found in owners
            for about, _ in found.items
        )

    @classmethod
    def initial(cls, poll_interval: float) -> Snapshot:
        """What the daemon shows before any task has published (and in tests)."""
        fresh = ChainView.fresh_window(poll_interval)
        return cls(ChainView(fresh), GovernanceView(), RegistryView(), PromotionsView())

    @property
    def problems(self) -> list[tuple[str, str, str]]:
        """(reported by, about, text) for every standing problem."""
        owners = (("chain", self.chain.problems), ("promotions", self.promotions.problems))
        return [(owner, about, text) for owner, found in owners for about, text in found.items]

    @property
    def problem(self) -> str | None:
        return "; ".join(text for _, _, text in self.problems) or None

    @property
    def upcoming(self) -> list[UpgradeProposal]:
        """Upcoming upgrades above the chain's height now: one that has passed is history."""
        height = self.chain.watch.height
        return [u for u in self.governance.upcoming if height is None or u.plan.height > height]


@attrs.frozen
class Views:
    """The four publishers, read together by the ops endpoints."""

    chain: Publishes[ChainView]
    governance: Publishes[GovernanceView]
    registry: Publishes[RegistryView]
    promotions: Publishes[PromotionsView]
    # -- after the retag: the follower, and the Nudger's snapshot when configured
    upgrade: Publishes[UpgradeView] | None = None
    flux: Callable[[], NudgeSnapshot] | None = None
    notifications: Callable[[], NotifierStatus] | None = None

    def snapshot(self) -> Snapshot:
        return Snapshot(
            self.chain.view,
            self.governance.view,
            self.registry.view,
            self.promotions.view,
            upgrade=UpgradeView() if self.upgrade is None else self.upgrade.view,
            flux=None if self.flux is None else self.flux(),
            notifications=None if self.notifications is None else self.notifications(),
        )


def readiness(snap: Snapshot, now: float) -> tuple[bool, dict[str, Any]]:
    """(ready, body): chain polled recently AND registry reachable with valid credentials."""
    chain_ok, chain_error = snap.chain.health(now)
    registry = snap.registry
    registry_ok = registry.ok is True
    registry_error = "credentials not checked yet" if registry.ok is None else registry.error
    body: dict[str, Any] = {
        "status": "ready" if chain_ok and registry_ok else "not ready",
        "checks": {
            "chain": {"ok": chain_ok, "last_error": chain_error},
            "registry": {"ok": registry_ok, "last_error": registry_error},
        },
    }
    if snap.problem is not None:
        # Reported, not fatal: an unready pod would block our own rollouts without fixing a
        # conflict that only the operator can resolve.
        body["problem"] = snap.problem
    return chain_ok and registry_ok, body


def status(snap: Snapshot) -> dict[str, Any]:
    chain, watch, registry = snap.chain, snap.chain.watch, snap.registry
    plan = watch.plan
    return {
        "chain": {
            "height": watch.height,
            "app_height": watch.app_height,
            "block_time_seconds": watch.block_time,
            "halted_for_upgrade": watch.halted,
            "last_successful_poll_unix": chain.last_poll_ok_unix,
            "last_error": chain.last_error,
            "endpoints": chain.lcd.to_json(),
            "quorum": chain.lcd.quorum,
        },
        "plan": None
        if plan is None
        else {"name": plan.name, "height": plan.height, "info": plan.info[:500]},
        "eta_seconds": watch.eta,
        "blocks_left": watch.blocks_left,
        "source_tag": None if watch.tags is None else watch.tags.source,
        "target_tag": None if watch.tags is None else watch.tags.target,
        "preflight": {tag: attrs.asdict(p) for tag, p in registry.preflight.items()},
        "upcoming": [
            {
                "proposal": u.id,
                "status": u.status.name,
                "name": u.plan.name,
                "height": u.plan.height,
            }
            for u in snap.upcoming
        ],
        "registry": {
            "ok": registry.ok,
            "checked_unix": registry.checked_unix,
            "last_error": registry.error,
        },
        "last_promotion": snap.promotions.last_promotion,
        # -- after the retag
        "upgrade": None if snap.upgrade.timeline is None else snap.upgrade.timeline.to_json(),
        "flux": None if snap.flux is None else snap.flux.to_dict(),
        "notifications": None if snap.notifications is None else snap.notifications.to_json(),
        "problem": snap.problem,
        "problems": [
            {"reported_by": owner, "about": about[:80], "text": text}
            for owner, about, text in snap.problems
        ],
    }

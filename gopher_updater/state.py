"""What the daemon knows right now, shared by its tasks and read by the ops endpoints.

Only the poller and the retag worker write it (all in one trio thread, so no locks); the ops
app only reads it. That is what makes a readiness probe free: it reports cached state and
never causes a chain or registry request itself.
"""

from __future__ import annotations

import time
from typing import Any

import attrs

from gopher_updater.model import Plan, UpgradeProposal


@attrs.define
class Preflight:
    """Does the source tag for a plan exist yet? Checked ahead of the height, by HEAD."""

    source_tag: str
    present: bool | None = None
    digest: str | None = None
    checked_at: float | None = None  # unix time
    error: str | None = None


@attrs.define
class State:
    poll_interval: float
    started_at: float = attrs.Factory(time.time)
    # chain
    chain_height: int | None = None
    app_height: int | None = None
    block_time: float | None = None
    plan: Plan | None = None
    eta_seconds: float | None = None
    halted: bool = False
    upcoming: list[UpgradeProposal] = attrs.Factory(list)
    last_poll_ok: float | None = None  # trio.current_time() of the last good poll
    last_poll_ok_unix: float | None = None
    last_poll_error: str | None = None
    poll_failures: int = 0  # consecutive failed polls
    # registry
    registry_ok: bool | None = None
    registry_checked_unix: float | None = None
    registry_error: str | None = None
    preflight: dict[str, Preflight] = attrs.Factory(dict)
    # promotion
    source_tag: str | None = None
    target_tag: str | None = None
    last_promotion: dict[str, Any] | None = None
    problem: str | None = None  # conflict / invalid plan name / source missing, for humans

    @property
    def chain_fresh_within(self) -> float:
        return max(3 * self.poll_interval, 30.0)

    #: Consecutive failed polls after which the chain counts as down even inside the window:
    #: one reset is noise, three in a row is an outage.
    MAX_POLL_FAILURES = 3

    def readiness(self, now: float) -> tuple[bool, dict[str, Any]]:
        """(ready, body): chain polled recently AND registry reachable with valid credentials."""
        chain_ok = (
            self.last_poll_ok is not None
            and now - self.last_poll_ok <= self.chain_fresh_within
            and self.poll_failures < self.MAX_POLL_FAILURES
        )
        chain_error = self.last_poll_error
        if not chain_ok and chain_error is None:
            chain_error = (
                "no successful poll yet"
                if self.last_poll_ok is None
                else f"no successful poll for {now - self.last_poll_ok:.0f}s"
            )
        registry_ok = self.registry_ok is True
        registry_error = self.registry_error
        if self.registry_ok is None:
            registry_error = "credentials not checked yet"
        body: dict[str, Any] = {
            "status": "ready" if chain_ok and registry_ok else "not ready",
            "checks": {
                "chain": {"ok": chain_ok, "last_error": chain_error},
                "registry": {"ok": registry_ok, "last_error": registry_error},
            },
        }
        if self.problem is not None:
            # Reported, not fatal: an unready pod would block our own rollouts without
            # fixing a conflict that only the operator can resolve.
            body["problem"] = self.problem
        return chain_ok and registry_ok, body

    def status(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "chain": {
                "height": self.chain_height,
                "app_height": self.app_height,
                "block_time_seconds": self.block_time,
                "halted_for_upgrade": self.halted,
                "last_successful_poll_unix": self.last_poll_ok_unix,
                "last_error": self.last_poll_error,
            },
            "plan": None
            if plan is None
            else {"name": plan.name, "height": plan.height, "info": plan.info[:500]},
            "eta_seconds": self.eta_seconds,
            "source_tag": self.source_tag,
            "target_tag": self.target_tag,
            "preflight": {tag: attrs.asdict(p) for tag, p in self.preflight.items()},
            "upcoming": [
                {
                    "proposal": u.id,
                    "status": u.status.name,
                    "name": u.plan.name,
                    "height": u.plan.height,
                }
                for u in self.upcoming
            ],
            "registry": {
                "ok": self.registry_ok,
                "checked_unix": self.registry_checked_unix,
                "last_error": self.registry_error,
            },
            "last_promotion": self.last_promotion,
            "problem": self.problem,
        }

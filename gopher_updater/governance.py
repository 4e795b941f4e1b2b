"""The governance reader: upgrade proposals for early warning and the start-up catch-up.

Its own task, slower than the poller, so that a three-page listing never delays a poll near
the upgrade height. Proposals are never the trigger: a passed proposal can still be cancelled
or re-scheduled, and plans can come from authorities that only `current_plan` shows.

With several LCD endpoints it reads from the most advanced healthy one (the pool's `lead`).
Listings stop early: the newest-passed walk stops at the proposal ids the previous one
reached (`ChainClient.newest_upgrades`), reopening those that were still in voting.

It is the only writer of the governance record, published after every listing as a frozen
`GovernanceView`: the proposals (read by the poller for the catch-up) and the upgrades still
ahead of the chain (preflighted by the registry watch, shown in `/status`).
"""

from __future__ import annotations

from typing import Protocol

import attrs
import trio

from gopher_updater import rule
from gopher_updater.chain_errors import ChainError
from gopher_updater.chain_gov import UpgradeListing
from gopher_updater.logs import get_logger
from gopher_updater.model import ProposalStatus, UpgradeProposal
from gopher_updater.views import ChainView, GovernanceView, Publishes, Wakeup

log = get_logger("gopher_updater.governance")

GOVERNANCE_EVERY = 10  # governance listings every GOVERNANCE_EVERY x POLL_INTERVAL


class ProposalReader(Protocol):
    async def upgrade_proposals(
        self, status: ProposalStatus | None = None, *, page_limit: int = 100
    ) -> list[UpgradeProposal]: ...

    async def newest_upgrades(
        self,
        status: ProposalStatus | None = None,
        *,
        want: int = 1,
        page_limit: int = 50,
        since: UpgradeListing | None = None,
        reopen: frozenset[int] = frozenset(),
    ) -> UpgradeListing: ...


class ChainWatch(Publishes[ChainView], Protocol):
    """What the governance reader needs of the poller: its view and two signals."""

    first_poll: trio.Event
    poll_now: Wakeup


@attrs.define
class Governance:
    chain: ProposalReader
    preflight: Wakeup  # the registry watch's: poked when the upcoming upgrades change
    poll_interval: float
    request_timeout: float
    _view: GovernanceView = attrs.field(init=False, factory=GovernanceView)
    #: The last PASSED listing and the ids then in voting: the next walk stops where that
    #: one reached, going down only to proposals that were still open (see `newest_upgrades`).
    _passed: UpgradeListing | None = attrs.field(init=False, default=None)
    _voting_ids: frozenset[int] = attrs.field(init=False, default=frozenset())

    @property
    def view(self) -> GovernanceView:
        return self._view

    async def run(
        self, poller: ChainWatch, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Upgrade proposals at start-up, then every GOVERNANCE_EVERY x POLL_INTERVAL."""
        task_status.started()
        # "Upcoming" means above the chain's height: wait (briefly) for the first poll to
        # know it, or every passed upgrade in history would look upcoming.
        with trio.move_on_after(2 * self.request_timeout):
            await poller.first_poll.wait()
        while True:
            first = self._view.proposals is None
            await self.read(poller.view.watch.height or 0)
            if first and self._view.proposals is not None:
                poller.poll_now.poke()  # start-up catch-up was waiting for this listing
            # Until the first listing succeeds, start-up catch-up is waiting on it: retry soon.
            factor = GOVERNANCE_EVERY if self._view.proposals is not None else 1
            await trio.sleep(factor * self.poll_interval)

    async def read(self, height: int) -> None:
        """One listing: voting-period upgrades and the newest passed ones."""
        # Listings are several requests: bound each page by the timeout, the whole by a few.
        try:
            with trio.fail_after(4 * self.request_timeout):
                voting = await self.chain.upgrade_proposals(ProposalStatus.VOTING_PERIOD)
                reopen = self._voting_ids | {p.id for p in voting}
                listing = await self.chain.newest_upgrades(
                    ProposalStatus.PASSED, want=3, page_limit=20, since=self._passed, reopen=reopen
                )
        except (ChainError, trio.TooSlowError) as exc:
            error = str(exc) or "timeout"
            if self._view.last_error is None:  # once per outage, not once per retry
                log.warning("governance listing failed; will retry later", error=error)
            self._view = attrs.evolve(self._view, last_error=error)
            return
        if self._view.last_error is not None:
            log.info("governance listing works again")
        self._passed, self._voting_ids = listing, frozenset(p.id for p in voting)
        proposals = (*voting, *listing.upgrades)
        upcoming = tuple(rule.upcoming(proposals, height))
        # Compared with what is still ahead: one that merely fell behind is no news.
        before = [u.id for u in self._view.upcoming if u.plan.height > height]
        if [u.id for u in upcoming] != before:
            for item in upcoming:
                log.info(
                    "upcoming upgrade",
                    proposal=item.id,
                    status=item.status.name,
                    plan=item.plan.name[:200],
                    height=item.plan.height,
                )
            self.preflight.poke()
        self._view = GovernanceView(proposals=proposals, upcoming=upcoming, last_error=None)

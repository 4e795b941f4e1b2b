"""The chain poller: observe, apply the pure rule, act on its decision, pick the next delay.

It owns the rule's `WatchState` and is the only task that changes it. Governance listings
run in their own slower task (`run_governance`) so that a three-page listing never delays a
poll near the upgrade height; they only feed the early-warning list and the start-up
catch-up, never the trigger.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import trio

from gopher_updater import rule
from gopher_updater.chain import ChainClient, ChainError
from gopher_updater.config import Config
from gopher_updater.logs import get_logger
from gopher_updater.metrics import Metrics
from gopher_updater.model import Height, Plan, PlanAnswer, ProposalStatus, UpgradeProposal
from gopher_updater.state import State
from gopher_updater.worker import JobQueue, Wakeup

log = get_logger("gopher_updater.poller")

MIN_FAST_POLL = 0.25  # seconds: the floor of adaptive polling near H
GOVERNANCE_EVERY = 10  # governance listings every GOVERNANCE_EVERY x POLL_INTERVAL
PREFLIGHT_UPCOMING = 5  # at most this many upcoming upgrades are preflighted


@attrs.define
class Poller:
    cfg: Config
    chain: ChainClient
    state: State
    metrics: Metrics
    queue: JobQueue
    wakeup: Wakeup
    tags: rule.TagScheme
    watch: rule.WatchState = attrs.Factory(rule.WatchState)
    proposals: list[UpgradeProposal] | None = None  # last governance read (None: not yet)
    caught_up: bool = False
    reported_invalid: set[str] = attrs.Factory(set)
    reported_halts: set[Plan] = attrs.Factory(set)
    poll_now: Wakeup = attrs.Factory(Wakeup)  # cuts the poller's sleep short
    applied_failures: int = 0  # consecutive failed applied_plan checks (backs polling off)
    governance_failing: bool = False
    first_poll: trio.Event = attrs.Factory(trio.Event)  # set once a poll has finished

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self.poll_once()
            now = trio.current_time()
            delay = rule.suggested_delay(
                self.watch, now, idle=self.cfg.poll_interval, fast=self.fast_interval()
            )
            if self.applied_failures:
                # The rule asks for applied_plan on every poll until it gets an answer; an
                # LCD that keeps failing that one route must not be hammered at 4 Hz.
                backoff = self.fast_interval() * 2**self.applied_failures
                delay = max(delay, min(backoff, self.cfg.poll_interval))
            await self.poll_now.sleep(delay)

    def fast_interval(self) -> float:
        per_block = rule.block_time(self.watch.changes)
        fast = MIN_FAST_POLL if per_block is None else max(per_block / 4, MIN_FAST_POLL)
        return min(fast, self.cfg.poll_interval)

    async def poll_once(self) -> None:
        started = trio.current_time()
        answer: PlanAnswer | None = None
        height: Height | None = None
        error: str | None = None
        try:
            with trio.fail_after(self.cfg.request_timeout):
                answer = await self.chain.current_plan()
                if rule.needs_latest_block(self.watch, answer):
                    height = await self.chain.latest_height()
        except ChainError as exc:
            error = str(exc)
        except trio.TooSlowError:
            error = f"poll took longer than REQUEST_TIMEOUT ({self.cfg.request_timeout:g}s)"
        now = trio.current_time()
        self.metrics.poll_duration.observe(now - started)
        self._record_poll(error, now)
        step = rule.step(self.watch, rule.Observation(answer, height, now), tags=self.tags)
        self.watch = step.state
        self._log_events(step.events)
        decision = step.decision
        if isinstance(decision, rule.ConfirmHalt):
            confirmed = rule.on_confirmed(self.watch, decision, await self._reread(decision))
            self.watch = confirmed.state
            self._log_events(confirmed.events)
            decision = confirmed.decision
        await self._act(decision)
        if answer is not None and not self.caught_up and self.proposals is not None:
            await self._catch_up(answer, self.proposals)
        self._publish(answer, height, now)
        self.first_poll.set()

    async def _reread(self, confirm: rule.ConfirmHalt) -> PlanAnswer | None:
        """current_plan once more, right after blocks/latest showed H (see `rule`)."""
        try:
            with trio.fail_after(self.cfg.request_timeout):
                return await self.chain.current_plan()
        except (ChainError, trio.TooSlowError) as exc:
            log.warning(
                "halt seen but the plan could not be re-read; asking again next poll",
                plan=confirm.job.plan.name,
                error=str(exc) or "timeout",
            )
            return None

    def _record_poll(self, error: str | None, now: float) -> None:
        if error is None:
            self.metrics.polls.labels(result="ok").inc()
            self.metrics.last_successful_poll.set(time.time())
            self.state.last_poll_ok, self.state.last_poll_ok_unix = now, time.time()
            if self.state.last_poll_error is not None:
                log.info("chain reachable again")
            self.state.last_poll_error = None
            self.state.poll_failures = 0
        else:
            self.metrics.polls.labels(result="error").inc()
            self.state.poll_failures += 1
            if self.state.last_poll_error is None:
                log.warning("chain poll failed", error=error)
            self.state.last_poll_error = error

    # --- decisions ------------------------------------------------------------------------

    async def _act(self, decision: rule.Decision) -> None:
        if isinstance(decision, rule.Promote):
            job = decision.job
            if await self.queue.submit(job):
                log.info(
                    "promotion queued",
                    plan=job.plan.name,
                    height=job.plan.height,
                    source_tag=job.source_tag,
                    target_tag=job.target_tag,
                    reason=job.reason,
                )
        elif isinstance(decision, rule.CheckApplied):
            await self._check_applied(decision)
        elif isinstance(decision, rule.InvalidPlanName):
            self.state.problem = f"plan {decision.plan.name[:80]!r}: {decision.reason}"
            if decision.plan.name not in self.reported_invalid:
                self.reported_invalid.add(decision.plan.name)
                log.error(
                    "invalid plan name: never promoted",
                    plan=decision.plan.name[:200],
                    height=decision.plan.height,
                    reason=decision.reason,
                )

    async def _check_applied(self, check: rule.CheckApplied) -> None:
        try:
            with trio.fail_after(self.cfg.request_timeout):
                applied = await self.chain.applied_height(check.plan.name)
        except (ChainError, trio.TooSlowError) as exc:
            self.applied_failures += 1
            log.warning(
                "applied_plan check failed; will ask again",
                plan=check.plan.name,
                error=str(exc) or "timeout",
            )
            return
        self.applied_failures = 0
        step = rule.on_applied(self.watch, check, applied, tags=self.tags)
        self.watch = step.state
        self._log_events(step.events)
        if isinstance(step.decision, rule.CheckApplied | rule.ConfirmHalt):  # pragma: no cover
            return
        await self._act(step.decision)

    async def _catch_up(self, answer: PlanAnswer, proposals: list[UpgradeProposal]) -> None:
        """Once at start-up: make sure the newest applied upgrade's target is promoted."""
        self.caught_up = True
        check = rule.catch_up(self.watch, answer, proposals)
        if check is not None:
            log.info(
                "start-up catch-up: checking the newest passed upgrade",
                plan=check.plan.name,
                height=check.plan.height,
            )
            await self._check_applied(check)

    # --- reporting ------------------------------------------------------------------------

    def _log_events(self, events: tuple[rule.Event, ...]) -> None:
        for event in events:
            if isinstance(event, rule.PlanSeen):
                log.info("plan seen", **_plan(event.plan))
                self.wakeup.poke()
            elif isinstance(event, rule.PlanRescheduled):
                log.warning(
                    "plan rescheduled",
                    **_plan(event.new),
                    old_height=event.old.height,
                    old_name=event.old.name,
                )
                self.wakeup.poke()
            elif isinstance(event, rule.PlanGone):
                log.warning(
                    "plan no longer current",
                    **_plan(event.plan),
                    replaced_by=event.replaced_by.name if event.replaced_by else None,
                )
            elif isinstance(event, rule.HaltDetected):
                if event.plan not in self.reported_halts:  # once per plan, not per poll
                    self.reported_halts.add(event.plan)
                    log.info(
                        "halt detected",
                        **_plan(event.plan),
                        block_height=event.block,
                        app_height=event.app,
                    )
            elif isinstance(event, rule.HaltUnconfirmed):
                log.warning(
                    "plan changed while the halt was checked; not promoting", **_plan(event.plan)
                )
            elif isinstance(event, rule.PlanCancelled):
                log.warning("plan cancelled: nothing to promote", **_plan(event.plan))
                if self.state.problem and event.plan.name in self.state.problem:
                    self.state.problem = None
            elif isinstance(event, rule.PlanAppliedElsewhere):
                log.info(
                    "plan was applied while not watched",
                    **_plan(event.plan),
                    applied_height=event.applied_height,
                )

    def _publish(self, answer: PlanAnswer | None, height: Height | None, now: float) -> None:
        st, m, watch = self.state, self.metrics, self.watch
        if watch.height is not None:
            st.chain_height = watch.height
            m.chain_height.set(watch.height)
            # An upgrade whose height has passed is history, not early warning.
            st.upcoming = [u for u in st.upcoming if u.plan.height > watch.height]
        if answer is not None:
            st.app_height = height.app if height and height.app is not None else answer.app_height
        per_block = rule.block_time(watch.changes)
        st.block_time = per_block
        m.block_time.set(per_block or 0)
        plan = watch.plan
        st.plan = plan
        m.upgrade_height.set(plan.height if plan else 0)
        st.eta_seconds = rule.eta(watch, plan.height, now) if plan else None
        m.upgrade_eta.set(st.eta_seconds or 0)
        st.halted = bool(plan and height and height.block >= plan.height)
        tags = self.tags.for_plan(plan) if plan is not None else None
        if isinstance(tags, rule.Tags):
            st.source_tag, st.target_tag = tags.source, tags.target

    def source_tags(self) -> list[str]:
        """Source tags to preflight: the current plan's and the upcoming upgrades'."""
        plans = [self.watch.plan] if self.watch.plan else []
        plans += [p.plan for p in self.state.upcoming[:PREFLIGHT_UPCOMING]]
        tags: list[str] = []
        for plan in plans:
            if plan is None or plan.name in self.watch.promoted:
                continue
            named = self.tags.for_plan(plan)
            if isinstance(named, rule.Tags) and named.source not in tags:
                tags.append(named.source)
        return tags

    # --- governance (its own task) --------------------------------------------------------

    async def run_governance(self) -> None:
        """Upgrade proposals at start-up, then every GOVERNANCE_EVERY x POLL_INTERVAL."""
        # "Upcoming" means above the chain's height: wait (briefly) for the first poll to
        # know it, or every passed upgrade in history would look upcoming.
        with trio.move_on_after(2 * self.cfg.request_timeout):
            await self.first_poll.wait()
        while True:
            await self.read_governance()
            # Until the first listing succeeds, start-up catch-up is waiting on it: retry soon.
            factor = GOVERNANCE_EVERY if self.proposals is not None else 1
            await trio.sleep(factor * self.cfg.poll_interval)

    async def read_governance(self) -> None:
        # Listings are several requests: bound each page by the timeout, the whole by a few.
        try:
            with trio.fail_after(4 * self.cfg.request_timeout):
                voting = await self.chain.upgrade_proposals(ProposalStatus.VOTING_PERIOD)
                passed = await self.chain.newest_upgrade_proposals(
                    ProposalStatus.PASSED, want=3, page_limit=20
                )
        except (ChainError, trio.TooSlowError) as exc:
            if not self.governance_failing:  # once per outage, not once per retry
                log.warning(
                    "governance listing failed; will retry later", error=str(exc) or "timeout"
                )
            self.governance_failing = True
            return
        if self.governance_failing:
            log.info("governance listing works again")
        self.governance_failing = False
        proposals = voting + passed
        height = self.watch.height or 0
        upcoming = rule.upcoming(proposals, height)
        if [u.id for u in upcoming] != [u.id for u in self.state.upcoming]:
            for item in upcoming:
                log.info(
                    "upcoming upgrade",
                    proposal=item.id,
                    status=item.status.name,
                    **_plan(item.plan),
                )
            self.wakeup.poke()
        self.state.upcoming = upcoming
        self.proposals = proposals
        if not self.caught_up:
            self.poll_now.poke()  # start-up catch-up was waiting for this listing


def _plan(plan: Any) -> dict[str, Any]:
    return {"plan": plan.name[:200], "height": plan.height}

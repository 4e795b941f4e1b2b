"""The chain poller: observe, drive the pure rule, act on its decision, publish, sleep.

It is the only task that changes the rule's `WatchState`, and the only writer of the chain
record, published after every poll as a frozen `ChainView` (the rule's own `WatchView`, poll
health, invalid-plan-name problems). It re-derives nothing the rule computed: halted, ETA,
blocks left, block time and the plan's tags are copied from the `Step`'s view.

The I/O of the halt protocol lives here, its decisions in `rule`: when `step` says
`ConfirmHalt`, `current_plan` is read again at once, in the same poll, and `on_confirmed`
decides. Governance proposals come from the governance reader's published view (its own
task, `governance.py`), for the start-up catch-up only, never the trigger.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import attrs
import trio

from gopher_updater import rule
from gopher_updater.announce import Announcer
from gopher_updater.chain import ChainError
from gopher_updater.logs import get_logger
from gopher_updater.metrics import Metrics
from gopher_updater.model import Height, Plan, PlanAnswer
from gopher_updater.state import ChainView, GovernanceView, Problems, Publishes, Wakeup
from gopher_updater.worker import JobQueue

log = get_logger("gopher_updater.poller")

MIN_FAST_POLL = 0.25  # seconds: the floor of adaptive polling near H


class ChainReader(Protocol):
    async def current_plan(self) -> PlanAnswer: ...

    async def latest_height(self) -> Height: ...

    async def applied_height(self, name: str) -> int: ...


@attrs.define
class Poller:
    chain: ChainReader
    metrics: Metrics
    queue: JobQueue
    tags: rule.TagScheme
    governance: Publishes[GovernanceView]
    preflight: Wakeup  # the registry watch's: poked when a new plan appears
    poll_interval: float
    request_timeout: float
    poll_now: Wakeup = attrs.Factory(Wakeup)  # cuts the poller's sleep short
    first_poll: trio.Event = attrs.Factory(trio.Event)  # set once a poll has finished
    announce: Announcer = attrs.Factory(Announcer)  # notifications: never blocks
    _watch: rule.WatchState = attrs.field(init=False, factory=rule.WatchState)
    _watch_view: rule.WatchView = attrs.field(init=False, factory=rule.WatchView)
    _view: ChainView = attrs.field(init=False)
    _last_ok: float | None = attrs.field(init=False, default=None)
    _last_ok_unix: float | None = attrs.field(init=False, default=None)
    _last_error: str | None = attrs.field(init=False, default=None)
    _failures: int = attrs.field(init=False, default=0)  # consecutive failed polls
    _problems: Problems = attrs.field(init=False, factory=Problems)
    _caught_up: bool = attrs.field(init=False, default=False)
    _applied_failures: int = attrs.field(init=False, default=0)  # backs polling off
    _reported_invalid: set[str] = attrs.field(init=False, factory=set)
    _reported_halts: set[Plan] = attrs.field(init=False, factory=set)

    @_view.default
    def _initial_view(self) -> ChainView:
        return ChainView(ChainView.fresh_window(self.poll_interval))

    @property
    def view(self) -> ChainView:
        return self._view

    # --- the loop -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self.poll_once()
            now = trio.current_time()
            delay = rule.suggested_delay(
                self._watch, now, idle=self.poll_interval, fast=self.fast_interval()
            )
            if self._applied_failures:
                # The rule asks for applied_plan on every poll until it gets an answer; an
                # LCD that keeps failing that one route must not be hammered at 4 Hz.
                backoff = self.fast_interval() * 2**self._applied_failures
                delay = max(delay, min(backoff, self.poll_interval))
            await self.poll_now.sleep(delay)

    def fast_interval(self) -> float:
        per_block = self._watch_view.block_time
        fast = MIN_FAST_POLL if per_block is None else max(per_block / 4, MIN_FAST_POLL)
        return min(fast, self.poll_interval)

    async def poll_once(self) -> None:
        started = trio.current_time()
        answer: PlanAnswer | None = None
        height: Height | None = None
        error: str | None = None
        try:
            with trio.fail_after(self.request_timeout):
                answer = await self.chain.current_plan()
                if rule.needs_latest_block(self._watch, answer):
                    height = await self.chain.latest_height()
        except ChainError as exc:
            error = str(exc)
        except trio.TooSlowError:
            error = f"poll took longer than REQUEST_TIMEOUT ({self.request_timeout:g}s)"
        now = trio.current_time()
        self.metrics.poll_duration.observe(now - started)
        self._record_poll(error, now)
        step = self._adopt(
            rule.step(self._watch, rule.Observation(answer, height, now), tags=self.tags)
        )
        decision = step.decision
        if isinstance(decision, rule.ConfirmHalt):
            # Right away, same poll: the promotion's latency path.
            decision = self._adopt(
                rule.on_confirmed(self._watch, decision, await self._reread(decision))
            ).decision
        await self._act(decision)
        governance = self.governance.view
        if answer is not None and not self._caught_up and governance.proposals is not None:
            await self._catch_up(answer, governance)
        self._publish()
        self.first_poll.set()

    def _adopt(self, step: rule.Step) -> rule.Step:
        """Take the rule's new state and view as ours, and log its events."""
        self._watch, self._watch_view = step.state, step.view
        self._log_events(step.events)
        return step

    async def _reread(self, confirm: rule.ConfirmHalt) -> PlanAnswer | None:
        """`current_plan` once more, right after blocks/latest showed H; None if it fails."""
        try:
            with trio.fail_after(self.request_timeout):
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
            self._last_ok, self._last_ok_unix = now, time.time()
            if self._last_error is not None:
                log.info("chain reachable again")
            self._last_error, self._failures = None, 0
        else:
            self.metrics.polls.labels(result="error").inc()
            self._failures += 1
            if self._last_error is None:
                log.warning("chain poll failed", error=error)
            self._last_error = error

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
            plan = decision.plan
            self._problems = self._problems.report(
                plan.name[:200], f"plan {plan.name[:80]!r}: {decision.reason}"
            )
            if plan.name not in self._reported_invalid:
                self._reported_invalid.add(plan.name)
                log.error(
                    "invalid plan name: never promoted",
                    plan=plan.name[:200],
                    height=plan.height,
                    reason=decision.reason,
                )
                self.announce.invalid_plan(plan, decision.reason)

    async def _check_applied(self, check: rule.CheckApplied) -> None:
        try:
            with trio.fail_after(self.request_timeout):
                applied = await self.chain.applied_height(check.plan.name)
        except (ChainError, trio.TooSlowError) as exc:
            self._applied_failures += 1
            log.warning(
                "applied_plan check failed; will ask again",
                plan=check.plan.name,
                error=str(exc) or "timeout",
            )
            return
        self._applied_failures = 0
        step = self._adopt(rule.on_applied(self._watch, check, applied, tags=self.tags))
        if isinstance(step.decision, rule.CheckApplied | rule.ConfirmHalt):  # pragma: no cover
            return  # the rule never answers applied_plan with another question
        await self._act(step.decision)

    async def _catch_up(self, answer: PlanAnswer, governance: GovernanceView) -> None:
        """Once at start-up: make sure the newest applied upgrade's target is promoted."""
        self._caught_up = True
        check = rule.catch_up(self._watch, answer, governance.proposals or ())
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
                self.announce.plan_seen(event.plan)
                self.preflight.poke()
            elif isinstance(event, rule.PlanRescheduled):
                log.warning(
                    "plan rescheduled",
                    **_plan(event.new),
                    old_height=event.old.height,
                    old_name=event.old.name,
                )
                self.announce.plan_rescheduled(event.old, event.new)
                self.preflight.poke()
            elif isinstance(event, rule.PlanGone):
                log.warning(
                    "plan no longer current",
                    **_plan(event.plan),
                    replaced_by=event.replaced_by.name if event.replaced_by else None,
                )
                self.announce.plan_gone(event.plan, event.replaced_by)
            elif isinstance(event, rule.HaltDetected):
                if event.plan not in self._reported_halts:  # once per plan, not per poll
                    self._reported_halts.add(event.plan)
                    log.info(
                        "halt detected",
                        **_plan(event.plan),
                        block_height=event.block,
                        app_height=event.app,
                    )
            elif isinstance(event, rule.HaltUnconfirmed):
                log.warning(
                    "plan changed while the halt was checked; not promoting",
                    **_plan(event.plan),
                    current=event.current.name[:200] if event.current else None,
                )
            elif isinstance(event, rule.PlanCancelled):
                log.warning("plan cancelled: nothing to promote", **_plan(event.plan))
                self.announce.plan_cancelled(event.plan)
                self._problems = self._problems.clear(event.plan.name[:200])
            elif isinstance(event, rule.PlanAppliedElsewhere):
                log.info(
                    "plan was applied while not watched",
                    **_plan(event.plan),
                    applied_height=event.applied_height,
                )

    def _publish(self) -> None:
        """Publish this poll's `ChainView` and the chain metrics, both from the rule's view."""
        watch = self._watch_view
        self._view = ChainView(
            fresh_within=self._view.fresh_within,
            watch=watch,
            last_poll_ok=self._last_ok,
            last_poll_ok_unix=self._last_ok_unix,
            last_error=self._last_error,
            poll_failures=self._failures,
            problems=self._problems,
        )
        m = self.metrics
        if watch.height is not None:
            m.chain_height.set(watch.height)
        m.block_time.set(watch.block_time or 0)
        m.upgrade_height.set(watch.plan.height if watch.plan else 0)
        m.upgrade_eta.set(watch.eta or 0)


def _plan(plan: Any) -> dict[str, Any]:
    return {"plan": plan.name[:200], "height": plan.height}

"""The chain poller: observe, drive the pure rule, act on its decision, publish, sleep.

It is the only task that changes the rule's `WatchState`, and the only writer of the chain
record, published after every poll as a frozen `ChainView` (the rule's own `WatchView`, poll
health, invalid-plan-name problems). It re-derives nothing the rule computed: halted, ETA,
blocks left, block time and the plan's tags are copied from the `Step`'s view.

Each poll asks every LCD endpoint at once through the pool (`lcd_pool.py`), which reads on
each what the rule wants (current_plan; blocks/latest near H; current_plan again, at once,
when that endpoint's reads show the halt) and returns one `Sighting` per endpoint;
`rule.step_pool` decides (the view from the most advanced endpoint, the halt from a quorum
of endpoints each confirming it). Near H the polls follow `cadence.suggested_delay`'s halt
window at the fixed `HALT_CADENCE`. Governance proposals come from the governance reader's
published view (its own task, `governance.py`), for the start-up catch-up only, never the
trigger.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from gopher_updater import cadence, quorum, rule, rule_records
from gopher_updater.announce import Announcer
from gopher_updater.chain_errors import ChainError
from gopher_updater.lcd_pool import ChainReader, LcdPool
from gopher_updater.logs import get_logger
from gopher_updater.metrics import Metrics
from gopher_updater.model import Plan, PlanAnswer
from gopher_updater.views import ChainView, GovernanceView, Problems, Publishes, Wakeup
from gopher_updater.worker import JobQueue

log = get_logger("gopher_updater.poller")

MIN_FAST_POLL = 0.25  # seconds: the floor of adaptive polling near H
HALT_CADENCE = 0.15  # seconds: the fixed cadence of the halt window (`cadence.halt_window`)


@attrs.define
class Poller:
    chain: ChainReader | LcdPool
    metrics: Metrics
    queue: JobQueue
    tags: rule_records.TagScheme
    governance: Publishes[GovernanceView]
    preflight: Wakeup  # the registry watch's: poked when a new plan appears
    poll_interval: float
    request_timeout: float
    poll_now: Wakeup = attrs.Factory(Wakeup)  # cuts the poller's sleep short
    first_poll: trio.Event = attrs.Factory(trio.Event)  # set once a poll has finished
    announce: Announcer = attrs.Factory(Announcer)  # notifications: never blocks
    _watch: rule_records.WatchState = attrs.field(init=False, factory=rule_records.WatchState)
    _watch_view: rule_records.WatchView = attrs.field(init=False, factory=rule_records.WatchView)
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
    _witnessed: dict[Plan, tuple[str, ...]] = attrs.field(init=False, factory=dict)
    _pool: LcdPool | None = attrs.field(init=False, default=None)

    @property
    def pool(self) -> LcdPool:
        """The endpoints asked each poll; a single `ChainReader` is a pool of one."""
        if self._pool is None:
            chain = self.chain
            self._pool = (
                chain
                if isinstance(chain, LcdPool)
                else LcdPool.single(chain, request_timeout=self.request_timeout)
            )
        return self._pool

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
            started = trio.current_time()
            await self.poll_once()
            now = trio.current_time()
            delay = cadence.suggested_delay(
                self._watch,
                now,
                idle=self.poll_interval,
                fast=self.fast_interval(),
                window=min(HALT_CADENCE, self.poll_interval),
            )
            if self._applied_failures:
                # The rule asks for applied_plan on every poll until it gets an answer; an
                # LCD that keeps failing that one route must not be hammered at 4 Hz.
                backoff = self.fast_interval() * 2**self._applied_failures
                delay = max(delay, min(backoff, self.poll_interval))
            # A fixed cadence counts from the start of a poll: its requests take time too.
            await self.poll_now.sleep(max(0.0, started + delay - now))

    def fast_interval(self) -> float:
        per_block = self._watch_view.block_time
        fast = MIN_FAST_POLL if per_block is None else max(per_block / 4, MIN_FAST_POLL)
        return min(fast, self.poll_interval)

    async def poll_once(self) -> None:
        started = trio.current_time()
        watch, pool = self._watch, self.pool
        sightings = await pool.sight(
            needs_block=lambda answer: cadence.needs_latest_block(watch, answer),
            wants_reread=lambda answer, height: (
                quorum.shows_halt(watch.promoted, answer, height) is not None
            ),
            enough=lambda seen: any(
                len(names) >= pool.quorum
                for names in quorum.halt_witnesses(watch.promoted, seen).values()
            ),
        )
        now = trio.current_time()
        self.metrics.poll_duration.observe(now - started)
        lead = quorum.lead(sightings, now)
        error = None
        if lead.plan is None:
            errors = [e.last_error for e in pool.view.endpoints if e.last_error]
            error = "; ".join(errors) or "no LCD endpoint answered"
        self._record_poll(error, now)
        step = self._adopt(
            rule.step_pool(self._watch, sightings, now, tags=self.tags, quorum=pool.quorum)
        )
        await self._act(step.decision, sightings)
        governance = self.governance.view
        if lead.plan is not None and not self._caught_up and governance.proposals is not None:
            await self._catch_up(lead.plan, governance, sightings)
        self._publish()
        self.first_poll.set()

    def _adopt(self, step: rule.Step) -> rule.Step:
        """Take the rule's new state and view as ours, and log its events."""
        self._watch, self._watch_view = step.state, step.view
        self._log_events(step.events)
        return step

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

    async def _act(
        self, decision: rule_records.Decision, sightings: Sequence[rule_records.Sighting]
    ) -> None:
        if isinstance(decision, rule_records.Promote):
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
        elif isinstance(decision, rule_records.CheckApplied):
            await self._check_applied(decision, sightings)
        elif isinstance(decision, rule_records.InvalidPlanName):
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

    async def _check_applied(
        self, check: rule_records.CheckApplied, sightings: Sequence[rule_records.Sighting]
    ) -> None:
        pool = self.pool
        try:
            answers = await pool.applied(check.plan.name, sightings)
        except ChainError as exc:
            self._applied_failures += 1
            log.warning(
                "applied_plan check failed; will ask again", plan=check.plan.name, error=str(exc)
            )
            return
        floor = self._watch.height
        applied = quorum.applied_by_quorum(check, answers, quorum=pool.quorum, floor=floor)
        if applied is None:
            self._applied_failures += 1
            log.warning(
                "applied_plan answers do not reach the quorum yet; will ask again",
                plan=check.plan.name,
                answers={a.endpoint: a.height for a in answers},
                quorum=pool.quorum,
            )
            return
        self._applied_failures = 0
        step = self._adopt(rule.on_applied(self._watch, check, applied, tags=self.tags))
        if isinstance(
            step.decision, rule_records.CheckApplied | rule_records.ConfirmHalt
        ):  # pragma: no cover
            return  # the rule never answers applied_plan with another question
        await self._act(step.decision, sightings)

    async def _catch_up(
        self,
        answer: PlanAnswer,
        governance: GovernanceView,
        sightings: Sequence[rule_records.Sighting],
    ) -> None:
        """Once at start-up: make sure the newest applied upgrade's target is promoted."""
        self._caught_up = True
        check = rule.catch_up(self._watch, answer, governance.proposals or ())
        if check is not None:
            log.info(
                "start-up catch-up: checking the newest passed upgrade",
                plan=check.plan.name,
                height=check.plan.height,
            )
            await self._check_applied(check, sightings)

    # --- reporting ------------------------------------------------------------------------

    def _log_events(self, events: tuple[rule_records.Event, ...]) -> None:
        for event in events:
            if isinstance(event, rule_records.PlanSeen):
                log.info("plan seen", **_plan(event.plan))
                self.announce.plan_seen(event.plan)
                self.preflight.poke()
            elif isinstance(event, rule_records.PlanRescheduled):
                log.warning(
                    "plan rescheduled",
                    **_plan(event.new),
                    old_height=event.old.height,
                    old_name=event.old.name,
                )
                self.announce.plan_rescheduled(event.old, event.new)
                self.preflight.poke()
            elif isinstance(event, rule_records.PlanGone):
                log.warning(
                    "plan no longer current",
                    **_plan(event.plan),
                    replaced_by=event.replaced_by.name if event.replaced_by else None,
                )
                self.announce.plan_gone(event.plan, event.replaced_by)
            elif isinstance(event, rule_records.HaltDetected):
                if event.plan not in self._reported_halts:  # once per plan, not per poll
                    self._reported_halts.add(event.plan)
                    log.info(
                        "halt detected",
                        **_plan(event.plan),
                        block_height=event.block,
                        app_height=event.app,
                    )
            elif isinstance(event, rule_records.HaltWitnessed):
                if self._witnessed.get(event.plan) != event.endpoints:  # on change only
                    self._witnessed[event.plan] = event.endpoints
                    log.info(
                        "halt witnessed",
                        **_plan(event.plan),
                        endpoints=list(event.endpoints),
                        quorum=event.quorum,
                    )
            elif isinstance(event, rule_records.HaltUnconfirmed):
                log.warning(
                    "plan changed while the halt was checked; not promoting",
                    **_plan(event.plan),
                    current=event.current.name[:200] if event.current else None,
                )
            elif isinstance(event, rule_records.PlanCancelled):
                log.warning("plan cancelled: nothing to promote", **_plan(event.plan))
                self.announce.plan_cancelled(event.plan)
                self._problems = self._problems.clear(event.plan.name[:200])
            elif isinstance(event, rule_records.PlanAppliedElsewhere):
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
            lcd=self.pool.view,
        )
        m = self.metrics
        if watch.height is not None:
            m.chain_height.set(watch.height)
        m.block_time.set(watch.block_time or 0)
        m.upgrade_height.set(watch.plan.height if watch.plan else 0)
        m.upgrade_eta.set(watch.eta or 0)


def _plan(plan: Any) -> dict[str, Any]:
    return {"plan": plan.name[:200], "height": plan.height}

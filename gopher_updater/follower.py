"""The upgrade follower: drives the timeline (`timeline.py`) from the halt until the chain runs.

It owns the newest upgrade's `Timeline` and publishes it as a frozen `UpgradeView`. What it
hears, it hears through non-blocking hooks, so nothing here can delay a poll or a promotion:

- the retag worker calls `job_started(job)` when a job begins (a halt job starts the
  timeline at `halted`, even if the promotion then fails) and `settled(job, promotion)`
  when it settles; `settled` also queues the Flux nudge (`Nudger.submit_nowait`);
- the Nudger calls `nudge_accepted(request, at)` at a series' first 2xx (`nudged`).

Hooks only put a message on the follower's bounded channel (a full channel drops it and
says so). The follower's own task applies them and, while an upgrade is followed and not
resumed, reads `blocks/latest` (and `applied_plan/<name>` until the node answers it) every
`FAST` seconds, each read bounded by REQUEST_TIMEOUT; once stuck every `SLOW` seconds, so
it can still see the chain resume; after `resumed` it stops reading.

A restarted daemon picks the upgrade up from what its own poller finds: the halt (job with
`halt_seen_at`) or the catch-up's applied plan, the target already at the digest
(`already_promoted`), then applied_plan and heights as read here. Marks from the first
successful chain read of an upgrade are not `live` (they may predate this process), which
decides what a restarted daemon still announces.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

import attrs
import trio

from gopher_updater import timeline as tl
from gopher_updater.announce import Announcer
from gopher_updater.chain_errors import ChainError
from gopher_updater.flux import Nudger
from gopher_updater.flux_status import NudgeRequest
from gopher_updater.logs import get_logger
from gopher_updater.manifest import Outcome
from gopher_updater.metrics import UpgradeMetrics
from gopher_updater.model import Height, RetagJob
from gopher_updater.views import Promotion, UpgradeView

log = get_logger("gopher_updater.follower")

FAST = 0.5  # seconds between reads from the halt until resumed
SLOW = 5.0  # once stuck (capped by POLL_INTERVAL): enough to notice a late resume
QUEUE_SIZE = 32


class FollowReader(Protocol):
    """The chain reads the follower needs (today the ChainClient; later the LCD pool)."""

    async def latest_height(self) -> Height: ...

    async def applied_height(self, name: str) -> int: ...


@attrs.frozen
class _Begin:
    plan: str
    height: int
    halted_at: float | None  # unix; None: no halt seen (catch-up, applied elsewhere)


@attrs.frozen
class _Observed:
    plan: str
    height: int
    observation: tl.Observation


_Message = _Begin | _Observed


@attrs.define
class Follower:
    chain: FollowReader
    metrics: UpgradeMetrics
    stuck_after: float
    poll_interval: float
    request_timeout: float
    repository: str
    nudger: Nudger | None = None
    announce: Announcer = attrs.Factory(Announcer)  # notifications: never blocks
    #: Unix time for the timeline's marks (tests put it on trio's MockClock).
    clock: Callable[[], float] = time.time
    _view: UpgradeView = attrs.field(init=False, factory=UpgradeView)
    _chain_id: str | None = attrs.field(init=False, default=None)
    _read_failing: bool = attrs.field(init=False, default=False)
    #: The upgrade (plan, height) the chain has been read for at least once: from then on a
    #: mark is a transition seen live, not a state already true when this process looked.
    _looked: tuple[str, int] | None = attrs.field(init=False, default=None)
    _channels: tuple[trio.MemorySendChannel[_Message], trio.MemoryReceiveChannel[_Message]] = (
        attrs.field(init=False, factory=lambda: trio.open_memory_channel[_Message](QUEUE_SIZE))
    )

    @property
    def view(self) -> UpgradeView:
        return self._view

    # --- hooks: called from other tasks, never block --------------------------------------

    def job_started(self, job: RetagJob) -> None:
        halted_at = None
        if job.halt_seen_at is not None:
            halted_at = self.clock() - max(0.0, trio.current_time() - job.halt_seen_at)
        if job.chain_id:
            self._chain_id = job.chain_id
        self._send(_Begin(job.plan.name, job.plan.height, halted_at))
        if halted_at is not None:
            self.announce.halted(job, halted_at)

    def settled(self, job: RetagJob, promotion: Promotion) -> None:
        """A promotion settled: queue the Flux nudge first (latency), then the timeline."""
        now = self.clock()
        delay = None
        if promotion.outcome is Outcome.PROMOTED and job.halt_seen_at is not None:
            delay = trio.current_time() - job.halt_seen_at
            self.metrics.promotion_delay.set(delay)
        if self.nudger is not None:
            self.nudger.submit_nowait(
                NudgeRequest(
                    chain_id=job.chain_id or self._chain_id or "",
                    plan=job.plan.name,
                    height=job.plan.height,
                    repository=self.repository,
                    target_tag=promotion.target_tag,
                    digest=promotion.source_digest or "",
                    block_h_seen_at=job.halt_seen_at,
                    at=int(now),
                )
            )
        self.announce.promoted(job, promotion, delay)
        observation = tl.Promoted(now, promotion.outcome.value, delay)
        self._send(_Observed(job.plan.name, job.plan.height, observation))

    def nudge_accepted(self, request: NudgeRequest, at: float) -> None:
        self._send(_Observed(request.plan, request.height, tl.Nudged(at)))

    def _send(self, message: _Message) -> None:
        try:
            self._channels[0].send_nowait(message)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            log.warning("upgrade_follower_message_dropped", plan=message.plan)

    # --- the task -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._publish()
        task_status.started()
        receive = self._channels[1]
        next_read = math.inf
        async with receive:
            while True:
                with trio.move_on_at(next_read):
                    message = await receive.receive()
                    if self._take(message):
                        next_read = trio.current_time()  # read the chain at once
                    continue
                await self._read_chain()
                next_read = trio.current_time() + self._cadence()

    def _cadence(self) -> float:
        current = self._view.timeline
        fast = min(FAST, self.poll_interval)
        if current is None or current.done:
            return math.inf
        return max(fast, min(SLOW, self.poll_interval)) if current.stuck else fast

    def _take(self, message: _Message) -> bool:
        """Apply a hook's message; True when it started following a new upgrade."""
        now = self.clock()
        current = self._view.timeline
        fresh = False
        if current is None or (message.height, message.plan) != (current.height, current.plan):
            if current is not None and message.height <= current.height:
                return False  # an older upgrade's late news: the newest one is followed
            current = tl.start(message.plan, message.height, stuck_after=self.stuck_after, at=now)
            log.info("upgrade_followed", plan=message.plan[:200], height=message.height)
            fresh = True
        if isinstance(message, _Begin):
            if message.halted_at is not None:
                self._apply(current, tl.Halted(message.halted_at))
            else:
                self._apply(current, tl.Tick(now))
        else:
            self._apply(current, message.observation)
        return fresh

    async def _read_chain(self) -> None:
        current = self._view.timeline
        assert current is not None
        block = applied = None
        block_time = None
        try:
            with trio.fail_after(self.request_timeout):
                height = await self.chain.latest_height()
            block, block_time = height.block, tl.parse_block_time(height.time)
            self._chain_id = height.chain_id or self._chain_id
            if not current.reached(tl.Stage.NODE_UPGRADED) and block <= current.height:
                with trio.fail_after(self.request_timeout):
                    applied = await self.chain.applied_height(current.plan)
            if self._read_failing:
                log.info("upgrade_follower_reads_ok", plan=current.plan[:200])
            self._read_failing = False
        except (ChainError, trio.TooSlowError) as exc:
            if not self._read_failing:
                log.warning("upgrade_follower_read_failed", plan=current.plan[:200], error=str(exc))
            self._read_failing = True
        # The timeline may have been replaced while we read: apply to the newest one.
        latest = self._view.timeline
        if latest is None or (latest.plan, latest.height) != (current.plan, current.height):
            return
        self._apply(latest, tl.ChainRead(self.clock(), block, applied, block_time))
        if block is not None:
            self._looked = (latest.plan, latest.height)

    def _apply(self, current: tl.Timeline, obs: tl.Observation) -> None:
        new, marks = tl.advance(current, obs)
        for mark in marks:
            fields = {"plan": new.plan[:200], "height": new.height, "at": mark.at}
            if mark.state is tl.Stage.PROMOTED:
                fields.update(outcome=new.outcome, promotion_delay_seconds=new.promotion_delay)
            elif mark.state is tl.Stage.RESUMED:
                fields.update(halt_duration_seconds=new.halt_duration)
            elif mark.state is tl.Stage.STUCK:
                fields.update(stuck_after_seconds=new.stuck_after)
            (log.error if mark.state is tl.Stage.STUCK else log.info)(
                f"upgrade_{mark.state.value}", **fields
            )
            self.announce.timeline_mark(new, mark, live=self._looked == (new.plan, new.height))
        self._view = UpgradeView(new)
        self._publish()

    def _publish(self) -> None:
        current = self._view.timeline
        state = None if current is None else current.state
        for stage in tl.Stage:
            self.metrics.state.labels(state=stage.value).set(1 if stage is state else 0)
        if current is not None and current.halt_duration is not None:
            self.metrics.halt_duration.set(current.halt_duration)

"""Who tells what: every notification the daemon sends is built here, and nowhere else.

The tasks that find the facts call one method per fact, where they already log it:

    poller     plan_seen, plan_rescheduled, plan_gone, plan_cancelled, invalid_plan
    preflight  preflight(tag, present, digest)      (when a source tag's presence changes)
    worker     source_missing_at_halt, conflict, retag_failed
    follower   halted (a halt job starts), promoted (settled), timeline_mark (nudged,
               node_upgraded, resumed, stuck)

Each method is synchronous, never blocks and never raises (a bug here is logged, never handed
to the poll or the retag that called it); it builds a `NotifyEvent` with the chain id and the
plan's tags and hands it to `Notifier.notify_nowait`. Without a notifier every method returns
at once. `run` is a small task with no chain request of its own beyond reading the chain id
once at start-up: from the poller's published `ChainView` it sends `scheduled` once the ETA
and the preflight answer are in, and the reminders. What is told when, and what is held
back: `announce_news.py`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec

import trio

from gopher_updater import timeline as tl
from gopher_updater.announce_news import (
    LIVE_AFTER_RESTART,
    MARKS,
    MAX_DIGESTS,
    MAX_PLANS,
    SCHEDULED_WAIT,
    SETTLE,
    TICK,
    ChainIdReader,
    News,
    Notifies,
    due_reminder,
    eta_for,
)
from gopher_updater.logs import get_logger
from gopher_updater.manifest import Outcome
from gopher_updater.model import Plan, RetagJob
from gopher_updater.notify import EventType, NotifyEvent
from gopher_updater.rule_records import Tags, TagScheme
from gopher_updater.views import ChainView, Promotion, Publishes, Wakeup

log = get_logger("gopher_updater.announce")

P = ParamSpec("P")


def _safe(
    method: Callable[Concatenate[Announcer, P], None],
) -> Callable[Concatenate[Announcer, P], None]:
    @functools.wraps(method)
    def wrapper(self: Announcer, /, *args: P.args, **kwargs: P.kwargs) -> None:
        if self._notifier is None:
            return
        try:
            method(self, *args, **kwargs)
        except Exception:  # never the caller's problem: a poll or a retag goes on
            log.exception("announce_failed", fact=method.__name__)

    return wrapper


class Announcer:
    """Turns the domain's facts into notifications; `Announcer()` is the silent one."""

    def __init__(
        self,
        notifier: Notifies | None = None,
        *,
        tags: TagScheme | None = None,
        request_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._notifier, self._tags = notifier, tags
        self._timeout, self._clock = request_timeout, clock
        self._chain: Publishes[ChainView] | None = None
        self._chain_id: str | None = None
        self._plans: dict[str, News] = {}
        self._presence: dict[str, bool] = {}  # source tag -> present, as preflight last said
        self._first_digest: dict[str, str] = {}  # source tag -> the digest preflight first saw
        self._wakeup = Wakeup()

    # --- the task -------------------------------------------------------------------------

    async def run(
        self,
        chain: Publishes[ChainView],
        reader: ChainIdReader | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._chain = chain
        task_status.started()
        next_id_read = trio.current_time()
        while True:
            now = trio.current_time()
            if self._chain_id is None and reader is not None and now >= next_id_read:
                next_id_read = trio.current_time() + TICK
                await self._read_chain_id(reader)
            self.tick()
            waiting = any(n.scheduled == "pending" for n in self._plans.values())
            await self._wakeup.sleep(SETTLE if waiting else TICK)

    async def _read_chain_id(self, reader: ChainIdReader) -> None:
        try:
            with trio.fail_after(self._timeout):
                height = await reader.latest_height()
        except Exception as exc:  # any failure: asked again at the next tick
            log.info("announce_chain_id_unknown", error=type(exc).__name__)
            return
        self._learn(height.chain_id)

    @_safe
    def tick(self) -> None:
        now = trio.current_time()
        for news in list(self._plans.values()):
            if news.scheduled == "pending" and self._ready(news, now):
                self._tell_scheduled(news)
            elif news.scheduled == "told":
                self._remind(news)

    # --- the poller -----------------------------------------------------------------------

    @_safe
    def plan_seen(self, plan: Plan) -> None:
        known = self._plans.get(plan.name)
        if known is not None and known.plan == plan:
            return  # back after a blip: already told
        named = None if self._tags is None else self._tags.for_plan(plan)
        tags = named if isinstance(named, Tags) else None
        self._add(News(plan, tags, trio.current_time(), "pending" if tags else "dropped"))
        self._wakeup.poke()

    @_safe
    def plan_rescheduled(self, old: Plan, new: Plan) -> None:
        news = self._plans.get(new.name)
        if news is None or news.quiet:
            return
        news.plan = new
        if news.scheduled != "told":
            return  # `scheduled` will carry the new height
        eta = self._eta(new)
        news.baseline, news.reminders = eta, set()
        self._tell(news, EventType.RESCHEDULED, previous_height=old.height, eta_seconds=eta)

    @_safe
    def plan_gone(self, plan: Plan, replaced_by: Plan | None) -> None:
        news = self._plans.get(plan.name)
        if news is not None and replaced_by is not None and replaced_by.name != plan.name:
            news.replaced_by = replaced_by

    @_safe
    def plan_cancelled(self, plan: Plan) -> None:
        news = self._plans.pop(plan.name, None)
        if news is None or news.quiet:
            return  # never seen here (a start-up catch-up), or not ours to tell
        new = news.replaced_by
        if new is not None:
            self._tell(news, EventType.REPLACED, new_plan=new.name, new_height=new.height)
        else:
            self._tell(news, EventType.CANCELLED)

    @_safe
    def invalid_plan(self, plan: Plan, reason: str) -> None:
        news = self._news_for(plan, None)
        news.scheduled = "dropped"
        self._emit(news, EventType.INVALID_PLAN)

    # --- the registry watch ---------------------------------------------------------------

    @_safe
    def preflight(self, tag: str, present: bool, digest: str | None) -> None:
        self._presence[tag] = present
        if present and digest and tag not in self._first_digest:
            self._first_digest[tag] = digest
            while len(self._first_digest) > MAX_DIGESTS:
                del self._first_digest[next(iter(self._first_digest))]
        if not present:
            for news in list(self._plans.values()):
                told = news.scheduled == "told" and news.held_halt is None and not news.quiet
                if told and news.tags is not None and news.tags.source == tag:
                    self._tell_missing(news, "first")
        self._wakeup.poke()  # a `scheduled` may be waiting for this answer

    # --- the retag worker -----------------------------------------------------------------

    @_safe
    def source_missing_at_halt(self, job: RetagJob) -> None:
        news = self._news_for(job.plan, Tags(job.source_tag, job.target_tag))
        if not news.quiet:
            self._tell(news, EventType.SOURCE_MISSING, occurrence="halt", source_present=False)

    @_safe
    def conflict(self, job: RetagJob, record: Promotion) -> None:
        news = self._news_for(job.plan, Tags(job.source_tag, job.target_tag))
        if news.quiet:
            return
        self._tell_moved(news, record.source_digest)
        target = record.previous_target_digest
        self._tell(news, EventType.CONFLICT, digest=record.source_digest, previous_digest=target)

    @_safe
    def retag_failed(self, job: RetagJob) -> None:
        news = self._plans.get(job.plan.name)
        if news is not None and not news.quiet:
            self._flush(news)  # the halt is news even while the registry fails

    # --- the upgrade follower -------------------------------------------------------------

    @_safe
    def halted(self, job: RetagJob, at: float) -> None:
        self._learn(job.chain_id)
        news = self._news_for(job.plan, Tags(job.source_tag, job.target_tag))
        first_seen_halted = job.halt_seen_at is not None and job.halt_seen_at <= news.seen_at
        if news.scheduled == "pending" and first_seen_halted:
            news.scheduled = "dropped"
        if not news.quiet:
            news.held_halt = self._event(news, EventType.HALTED, at=at)

    @_safe
    def promoted(self, job: RetagJob, record: Promotion, delay: float | None) -> None:
        self._learn(job.chain_id)
        news = self._news_for(job.plan, Tags(job.source_tag, job.target_tag))
        if record.outcome is Outcome.ALREADY_PROMOTED or news.quiet:
            news.quiet, news.held_halt = True, None
            if news.scheduled == "pending":
                news.scheduled = "dropped"
            held, news.held_marks = news.held_marks, []
            for event, live in held:
                if live and event.type in LIVE_AFTER_RESTART:
                    self._queue(event)
            return
        if record.outcome is not Outcome.PROMOTED:  # would_promote (DRY_RUN): nothing written
            self._flush(news)
            return
        self._tell_moved(news, record.source_digest)
        fields = {"target_tag": record.target_tag, "digest": record.source_digest}
        self._tell(news, EventType.PROMOTED, delay_seconds=delay, **fields)

    @_safe
    def timeline_mark(self, timeline: tl.Timeline, mark: tl.Mark, live: bool = True) -> None:
        """A timeline transition; `live` unless it was already true at the first chain read."""
        kind = MARKS.get(mark.state)
        news = self._plans.get(timeline.plan)
        if kind is None or news is None or news.plan.height != timeline.height:
            return
        if news.quiet and not (live and kind in LIVE_AFTER_RESTART):
            return
        halted = timeline.at(tl.Stage.HALTED)
        fields: dict[str, Any] = {}
        if kind is EventType.NUDGED and halted is not None:
            fields["delay_seconds"] = max(0.0, mark.at - halted)
        elif kind is EventType.RESUMED:
            fields["halt_duration_seconds"] = timeline.halt_duration
        elif kind is EventType.STUCK:
            fields["halt_duration_seconds"] = timeline.halted_for(mark.at)
        if news.held_halt is not None:  # the retag has not answered: who told the halt?
            news.held_marks.append((self._event(news, kind, at=mark.at, **fields), live))
            return
        self._tell(news, kind, at=mark.at, **fields)

    # --- helpers --------------------------------------------------------------------------

    def _learn(self, chain_id: str | None) -> None:
        if chain_id:
            self._chain_id = chain_id

    def _add(self, news: News) -> News:
        self._plans[news.plan.name] = news
        while len(self._plans) > MAX_PLANS:
            del self._plans[next(iter(self._plans))]
        return news

    def _news_for(self, plan: Plan, tags: Tags | None) -> News:
        news = self._plans.get(plan.name)
        if news is None:
            return self._add(News(plan, tags, trio.current_time(), "dropped"))
        news.plan, news.tags = plan, news.tags or tags
        return news

    def _eta(self, plan: Plan) -> float | None:
        view = None if self._chain is None else self._chain.view
        return None if view is None else eta_for(view, plan, trio.current_time())

    def _ready(self, news: News, now: float) -> bool:
        if now - news.seen_at >= SCHEDULED_WAIT:
            return True
        answered = news.tags is not None and news.tags.source in self._presence
        return answered and self._chain_id is not None and self._eta(news.plan) is not None

    def _tell_scheduled(self, news: News) -> None:
        eta = self._eta(news.plan)
        present = None if news.tags is None else self._presence.get(news.tags.source)
        news.scheduled, news.baseline = "told", eta
        self._emit(news, EventType.SCHEDULED, eta_seconds=eta, source_present=present)
        if present is False:
            self._tell_missing(news, "first")

    def _remind(self, news: News) -> None:
        view = None if self._chain is None else self._chain.view
        if news.quiet or news.held_halt is not None or news.tags is None or view is None:
            return
        if view.watch.plan != news.plan or view.watch.halted:
            return
        eta = self._eta(news.plan)
        if eta is None or eta <= 0:
            return
        if news.baseline is None:  # ETA unknown when told: the first one known decides
            news.baseline = eta
            return
        occurrence = due_reminder(news.baseline, news.reminders, eta)
        if occurrence is None:
            return
        news.reminders.add(occurrence)
        present = self._presence.get(news.tags.source)
        self._emit(
            news, EventType.REMINDER, occurrence=occurrence, eta_seconds=eta, source_present=present
        )
        if occurrence == "1h" and present is False:
            self._tell_missing(news, "1h")

    def _tell_missing(self, news: News, occurrence: str) -> None:
        if occurrence == "first":
            if news.missing_told:
                return
            news.missing_told = True
        fields = {"occurrence": occurrence, "eta_seconds": self._eta(news.plan)}
        self._tell(news, EventType.SOURCE_MISSING, source_present=False, **fields)

    def _tell_moved(self, news: News, digest: str | None) -> None:
        first = None if news.tags is None else self._first_digest.get(news.tags.source)
        if first is not None and digest is not None and digest != first:
            self._tell(news, EventType.SOURCE_MOVED, digest=digest, previous_digest=first)

    def _flush(self, news: News) -> None:
        """What is held back for this plan goes first, so every channel keeps the order."""
        if news.scheduled == "pending":
            self._tell_scheduled(news)
        held, news.held_halt = news.held_halt, None
        if held is not None:
            self._queue(held)
        marks, news.held_marks = news.held_marks, []
        for event, _ in marks:
            self._queue(event)

    def _tell(self, news: News, kind: EventType, **fields: Any) -> None:
        self._flush(news)
        self._emit(news, kind, **fields)

    def _emit(self, news: News, kind: EventType, **fields: Any) -> None:
        self._queue(self._event(news, kind, **fields))

    def _queue(self, event: NotifyEvent) -> None:
        if self._notifier is not None:
            queued = self._notifier.notify_nowait(event)
            # queued=False: filtered out by NOTIFY_EVENTS, or already sent
            fields = {"occurrence": event.occurrence, "plan": event.plan[:64], "queued": queued}
            log.debug("notification_queued", event_type=event.type.value, **fields)

    def _event(self, news: News, kind: EventType, **fields: Any) -> NotifyEvent:
        at = fields.pop("at", None)
        tags = news.tags
        fields.setdefault("source_tag", None if tags is None else tags.source)
        fields.setdefault("target_tag", None if tags is None else tags.target)
        return NotifyEvent(
            type=kind,
            chain_id=self._chain_id or "",
            plan=news.plan.name,
            height=news.plan.height,
            at=self._clock() if at is None else at,
            **fields,
        )

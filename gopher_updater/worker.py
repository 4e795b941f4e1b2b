"""The retag worker: turns `RetagJob`s into promotions, and owns what they did.

The worker consumes jobs from a bounded trio channel, each in its own task, and keeps at a job
until the registry says `promoted` or `already_promoted`: a missing source image is checked
again on a short cadence (CI may still be pushing it when the chain halts) and a transient
registry error is retried with backoff. A conflict stops the job: overwriting a target that
holds another digest is the operator's call (`OVERWRITE_TARGET`), reported loudly.

It is the only writer of the promotions record, published as a frozen `PromotionsView`: the
last settled promotion and the standing problems of its jobs, keyed by plan name. (The
registry watch, which checks credentials and preflights source tags, is `preflight.py`.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from gopher_updater.announce import Announcer
from gopher_updater.logs import get_logger
from gopher_updater.manifest import Outcome, RetagOutcome
from gopher_updater.metrics import Metrics
from gopher_updater.model import RetagJob
from gopher_updater.registry_errors import RegistryError
from gopher_updater.views import Promotion, PromotionsView

log = get_logger("gopher_updater.worker")

SOURCE_MISSING_RECHECK = 2.0  # seconds; HEAD is cheap and not counted by Docker Hub
SOURCE_MISSING_PATIENCE = 900.0  # after this long, recheck every SOURCE_MISSING_SLOW seconds
SOURCE_MISSING_SLOW = 30.0
ERROR_BACKOFF = (1.0, 30.0)  # first and maximum wait after a failed attempt
SETTLED = frozenset({Outcome.PROMOTED, Outcome.ALREADY_PROMOTED, Outcome.WOULD_PROMOTE})


@attrs.define
class JobQueue:
    """The sending side of the worker's channel, deduplicated.

    A job already queued or in flight is not queued again, and a job that finished (promoted,
    already promoted, or stopped on a conflict) is not queued again either. The rule already
    emits a promotion at most once per plan; this is the channel's own guard. (The poller adds
    to `pending` as it sends and the worker removes what it settled, like the two ends of the
    channel itself.)
    """

    send_channel: trio.MemorySendChannel[RetagJob]
    pending: set[RetagJob] = attrs.Factory(set)
    finished: set[RetagJob] = attrs.Factory(set)

    async def submit(self, job: RetagJob) -> bool:
        if job in self.pending or job in self.finished:
            return False
        self.pending.add(job)
        await self.send_channel.send(job)
        return True


class Retagger(Protocol):
    async def retag(self, source_tag: str, target_tag: str) -> RetagOutcome: ...


class RetagHooks(Protocol):
    """What happens after the retag (the upgrade follower, which also queues the Flux
    nudge). Both are synchronous and must never block: they only queue."""

    def job_started(self, job: RetagJob) -> None: ...

    def settled(self, job: RetagJob, promotion: Promotion) -> None: ...


@attrs.define
class RetagWorker:
    """Runs the retag jobs; sole owner of the promotions record (see module docstring)."""

    registry: Retagger
    metrics: Metrics
    queue: JobQueue
    hooks: RetagHooks | None = None
    announce: Announcer = attrs.Factory(Announcer)  # notifications: never blocks
    _view: PromotionsView = attrs.field(init=False, factory=PromotionsView)
    _active: dict[RetagJob, trio.CancelScope] = attrs.field(init=False, factory=dict)

    @property
    def view(self) -> PromotionsView:
        return self._view

    async def run(
        self,
        receive: trio.MemoryReceiveChannel[RetagJob],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Take jobs off the channel; each runs in its own task until settled or superseded.

        One task per job, so a job stuck waiting for a source image that never comes (the
        chain was upgraded by hand) cannot block the next upgrade's job behind it. A job for a
        higher plan supersedes unsettled jobs for lower ones: only the newest upgrade is
        promoted.
        """
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for job in receive:
                for older, scope in list(self._active.items()):
                    if older.plan.height < job.plan.height:
                        log.warning(
                            "superseded by a newer plan; no longer promoting",
                            plan=older.plan.name,
                            newer_plan=job.plan.name,
                        )
                        scope.cancel()
                        self._set_problem(older, None)  # no longer pursued
                self._active[job] = trio.CancelScope()
                nursery.start_soon(self._run_job, job, name=f"retag {job.target_tag}")

    async def _run_job(self, job: RetagJob) -> None:
        scope = self._active[job]
        if self.hooks is not None:
            _quietly(self.hooks.job_started, job)
        try:
            with scope:
                if await self._promote(job):
                    self.queue.finished.add(job)
            if scope.cancelled_caught:
                self.queue.finished.add(job)
        finally:
            self._active.pop(job, None)
            self.queue.pending.discard(job)

    async def _promote(self, job: RetagJob) -> bool:
        """Work on one job until it is settled; True when it must never be retried."""
        backoff = ERROR_BACKOFF[0]
        missing_since: float | None = None
        bound = log.bind(plan=job.plan.name, height=job.plan.height, reason=job.reason)
        bound = bound.bind(source_tag=job.source_tag, target_tag=job.target_tag)
        while True:
            try:
                outcome = await self.registry.retag(job.source_tag, job.target_tag)
            except RegistryError as exc:
                self.metrics.retags.labels(outcome="error").inc()
                self._set_problem(
                    job,
                    f"retag {job.source_tag} -> {job.target_tag} failed: {exc}",
                    "promotion_error",
                )
                bound.warning("retag failed, will retry", error=str(exc), retry_in=backoff)
                self.announce.retag_failed(job)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, ERROR_BACKOFF[1])
                continue
            kind = outcome.outcome
            self.metrics.retags.labels(outcome=kind.value).inc()
            digest = str(outcome.source_digest) if outcome.source_digest else None
            if kind in SETTLED:
                # A settled promotion also retires the problems of jobs no longer running
                # (an older conflict, a superseded job): the newest upgrade is what counts.
                problems = self._view.problems.only({j.plan.name for j in self._active})
                record = _record(job, outcome)
                self._view = PromotionsView(record, problems.clear(job.plan.name))
                bound.info(kind.value, digest=digest, dry_run=outcome.dry_run)
                if self.hooks is not None:
                    _quietly(self.hooks.settled, job, record)
                return True
            if kind is Outcome.CONFLICT:
                text = (
                    f"conflict: {job.target_tag} holds {outcome.previous_target_digest}, not "
                    f"{digest} ({job.source_tag}); set OVERWRITE_TARGET=true to replace it"
                )
                record = _record(job, outcome)
                self._view = attrs.evolve(self._view, last=record)
                self._set_problem(job, text, "conflict")
                bound.error(
                    "conflict: target tag holds another digest, not overwriting",
                    source_digest=digest,
                    target_digest=str(outcome.previous_target_digest),
                )
                self.announce.conflict(job, record)
                return True
            # source_missing: CI may still be pushing; promote the moment it appears. After a
            # quarter of an hour nobody is racing a halted chain any more: check gently.
            self._set_problem(
                job,
                f"source image {job.source_tag} missing; checking every few seconds",
                "source_missing",
            )
            if missing_since is None:
                bound.error("source image missing at promotion time; waiting for it")
                self.announce.source_missing_at_halt(job)
                missing_since = trio.current_time()
            waited = trio.current_time() - missing_since
            await trio.sleep(
                SOURCE_MISSING_RECHECK if waited < SOURCE_MISSING_PATIENCE else SOURCE_MISSING_SLOW
            )

    def _set_problem(self, job: RetagJob, text: str | None, kind: str | None = None) -> None:
        problems = self._view.problems.clear(job.plan.name)
        if text is not None:
            problems = problems.report(job.plan.name, text, kind)
        self._view = attrs.evolve(self._view, problems=problems)


def _quietly(hook: Callable[..., None], *args: Any) -> None:
    """Call an after-the-retag hook: its bug must never take a promotion down with it."""
    try:
        hook(*args)
    except Exception:
        log.exception("after-retag hook failed", hook=getattr(hook, "__name__", "?"))


def _record(job: RetagJob, outcome: RetagOutcome) -> Promotion:
    return Promotion(
        plan=job.plan,
        reason=job.reason,
        outcome=outcome.outcome,
        source_tag=outcome.source_tag,
        target_tag=outcome.target_tag,
        source_digest=str(outcome.source_digest) if outcome.source_digest else None,
        previous_target_digest=(
            str(outcome.previous_target_digest) if outcome.previous_target_digest else None
        ),
        dry_run=outcome.dry_run,
    )

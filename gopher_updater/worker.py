"""The retag worker and the registry watcher: everything that talks to the registry.

The worker consumes `RetagJob`s from a bounded trio channel, one at a time, and keeps at a job
until the registry says `promoted` or `already_promoted`: a missing source image is checked
again on a short cadence (CI may still be pushing it when the chain halts) and a transient
registry error is retried with backoff. A conflict stops the job: overwriting a target that
holds another digest is the operator's call (`OVERWRITE_TARGET`), reported loudly.

The registry watcher checks credentials (a push-scope token) at start-up and periodically and
HEADs the source tags of the current and upcoming plans ahead of their heights, so that a
missing image is noticed hours before the halt rather than at it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
import trio

from gopher_updater.logs import get_logger
from gopher_updater.manifest import RetagOutcome
from gopher_updater.metrics import Metrics
from gopher_updater.model import RetagJob
from gopher_updater.registry import RegistryClient
from gopher_updater.registry_errors import RegistryError
from gopher_updater.state import Preflight, State

log = get_logger("gopher_updater.worker")

SOURCE_MISSING_RECHECK = 2.0  # seconds; HEAD is cheap and not counted by Docker Hub
SOURCE_MISSING_PATIENCE = 900.0  # after this long, recheck every SOURCE_MISSING_SLOW seconds
SOURCE_MISSING_SLOW = 30.0
CREDENTIALS_RETRY = 15.0  # seconds until a failed credential check is repeated
ERROR_BACKOFF = (1.0, 30.0)  # first and maximum wait after a failed attempt


@attrs.define
class JobQueue:
    """The sending side of the worker's channel, deduplicated.

    A job already queued or in flight is not queued again, and a job that finished (promoted,
    already promoted, or stopped on a conflict) is not queued again either: while the chain
    sits halted, every poll re-derives the same decision.
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


def _outcome_dict(outcome: RetagOutcome) -> dict[str, object]:
    return {
        "outcome": outcome.outcome.value,
        "source_tag": outcome.source_tag,
        "target_tag": outcome.target_tag,
        "source_digest": str(outcome.source_digest) if outcome.source_digest else None,
        "previous_target_digest": (
            str(outcome.previous_target_digest) if outcome.previous_target_digest else None
        ),
        "dry_run": outcome.dry_run,
        "at_unix": time.time(),
    }


async def run_worker(
    receive: trio.MemoryReceiveChannel[RetagJob],
    queue: JobQueue,
    registry: RegistryClient,
    state: State,
    metrics: Metrics,
) -> None:
    """Take jobs off the channel; each runs in its own task until settled or superseded.

    One task per job, so a job stuck waiting for a source image that never comes (the chain
    was upgraded by hand) cannot block the next upgrade's job behind it. A job for a higher
    plan supersedes unsettled jobs for lower ones: only the newest upgrade is promoted.
    """
    active: dict[RetagJob, trio.CancelScope] = {}

    async def run_job(job: RetagJob, scope: trio.CancelScope) -> None:
        try:
            with scope:
                if await _promote(job, registry, state, metrics):
                    queue.finished.add(job)
            if scope.cancelled_caught:
                queue.finished.add(job)
        finally:
            active.pop(job, None)
            queue.pending.discard(job)

    async with trio.open_nursery() as nursery:
        async for job in receive:
            for older, scope in list(active.items()):
                if older.plan.height < job.plan.height:
                    log.warning(
                        "superseded by a newer plan; no longer promoting",
                        plan=older.plan.name,
                        newer_plan=job.plan.name,
                    )
                    scope.cancel()
            active[job] = trio.CancelScope()
            nursery.start_soon(run_job, job, active[job], name=f"retag {job.target_tag}")


async def _promote(job: RetagJob, registry: RegistryClient, state: State, metrics: Metrics) -> bool:
    """Work on one job until it is settled; True when it must never be retried."""
    backoff = ERROR_BACKOFF[0]
    missing_since: float | None = None
    bound = log.bind(plan=job.plan.name, height=job.plan.height, reason=job.reason)
    bound = bound.bind(source_tag=job.source_tag, target_tag=job.target_tag)
    while True:
        try:
            outcome = await registry.retag(job.source_tag, job.target_tag)
        except RegistryError as exc:
            metrics.retags.labels(outcome="error").inc()
            state.problem = f"retag {job.source_tag} -> {job.target_tag} failed: {exc}"
            bound.warning("retag failed, will retry", error=str(exc), retry_in=backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, ERROR_BACKOFF[1])
            continue
        kind = outcome.outcome.value
        metrics.retags.labels(outcome=kind).inc()
        digest = str(outcome.source_digest) if outcome.source_digest else None
        if kind in ("promoted", "already_promoted", "would_promote"):
            state.last_promotion = _outcome_dict(outcome)
            state.problem = None
            bound.info(kind, digest=digest, dry_run=outcome.dry_run)
            return True
        if kind == "conflict":
            state.last_promotion = _outcome_dict(outcome)
            state.problem = (
                f"conflict: {job.target_tag} holds {outcome.previous_target_digest}, not "
                f"{digest} ({job.source_tag}); set OVERWRITE_TARGET=true to replace it"
            )
            bound.error(
                "conflict: target tag holds another digest, not overwriting",
                source_digest=digest,
                target_digest=str(outcome.previous_target_digest),
            )
            return True
        # source_missing: CI may still be pushing; promote the moment it appears. After a
        # quarter of an hour nobody is racing a halted chain any more: check gently.
        state.problem = f"source image {job.source_tag} missing; checking every few seconds"
        if missing_since is None:
            bound.error("source image missing at promotion time; waiting for it")
            missing_since = trio.current_time()
        waited = trio.current_time() - missing_since
        await trio.sleep(
            SOURCE_MISSING_RECHECK if waited < SOURCE_MISSING_PATIENCE else SOURCE_MISSING_SLOW
        )


async def check_credentials(registry: RegistryClient, state: State) -> None:
    try:
        await registry.check_push_access()
    except RegistryError as exc:
        if state.registry_ok is not False or state.registry_error != str(exc):
            log.error("registry credentials check failed", error=str(exc))
        state.registry_ok, state.registry_error = False, str(exc)
    else:
        if state.registry_ok is not True:
            log.info("registry credentials ok (push access)")
        state.registry_ok, state.registry_error = True, None
    state.registry_checked_unix = time.time()


async def preflight(
    registry: RegistryClient, state: State, metrics: Metrics, source_tags: list[str]
) -> None:
    """HEAD each source tag; record and log changes (present <-> missing)."""
    for tag in source_tags:
        entry = state.preflight.setdefault(tag, Preflight(source_tag=tag))
        try:
            digest = await registry.digest(tag)
        except RegistryError as exc:
            entry.error = str(exc)
            continue
        present = digest is not None
        if entry.present is not present:
            (log.info if present else log.warning)(
                "preflight: source image " + ("present" if present else "missing"),
                source_tag=tag,
                digest=str(digest) if digest else None,
            )
        entry.present, entry.error = present, None
        entry.digest = str(digest) if digest else None
        entry.checked_at = time.time()
        metrics.source_tag_present.labels(tag=tag).set(1 if present else 0)
    for stale in set(state.preflight) - set(source_tags):
        del state.preflight[stale]
        metrics.source_tag_present.remove(stale)


class Wakeup:
    """A re-armable wake-up: the poller pokes it when a new plan or proposal appears."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def poke(self) -> None:
        self._event.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or less if poked meanwhile."""
        with trio.move_on_after(seconds):
            await self._event.wait()
        self._event = trio.Event()


async def run_registry_watch(
    registry: RegistryClient,
    state: State,
    metrics: Metrics,
    source_tags: Callable[[], list[str]],
    *,
    interval: float,
    wakeup: Wakeup,
) -> None:
    """Credentials and preflight now, then every `interval` or when poked.

    After a failed credential check the next one comes sooner: a registry that was briefly
    unreachable at start-up should not keep the pod unready for a whole interval.
    """
    while True:
        await check_credentials(registry, state)
        await preflight(registry, state, metrics, source_tags())
        await wakeup.sleep(interval if state.registry_ok else min(interval, CREDENTIALS_RETRY))

"""Nudge Flux Receivers the moment a promotion settles, so nodes roll without waiting.

After the retag, Flux notices the new tag only at its ImageRepository's next scan, and the
automation's commit only at the GitRepository's next fetch: minutes, with the chain halted.
A Receiver call makes Flux reconcile at once. So when a promotion settles we POST a small
signed event to every configured Receiver at once, then again at about +10, +30, +60 and
+120 s: a Receiver that also lists the GitRepository then fetches the automation's commit
soon after it is pushed, instead of at the GitRepository's interval.

The nudge is best-effort and must never hold up a promotion or the poller: requests arrive
through `Nudger.submit_nowait` (a bounded channel; a full one drops and logs), every series
runs in the Nudger's own nursery, and every request is bounded by a timeout. Retryable
answers (404, 408, 425, 429, 5xx, no answer) are retried after ~1 s, doubling, for at most
~2 minutes per send; any other non-2xx (400 bad signature, 413, 401/403 from an ingress) is a
configuration error: logged loudly once and that receiver's series for this upgrade ends.

Nothing here shows a Receiver's URL path or token: receivers are named by origin and index.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import attrs
import httpx
import trio

from gopher_updater.flux_receiver import (
    Receiver,
    classify,
    rejection_hint,
    request_headers,
    token_warning,
)
from gopher_updater.flux_status import (
    FluxMetrics,
    NudgeRequest,
    NudgeSchedule,
    NudgeSnapshot,
    ReceiverResult,
    event_body,
)
from gopher_updater.logs import get_logger

log = get_logger("gopher_updater.flux")

#: Called once per series, at its first accepted nudge, with the request and the unix time.
OnAccepted = Callable[[NudgeRequest, float], None]


@attrs.define
class _Track:
    """One receiver's mutable record within a series; frozen into a ReceiverResult."""

    receiver: Receiver
    outcome: str = "pending"
    status_code: int | None = None
    error: str | None = None
    at: float | None = None
    attempts: int = 0
    accepted: int = 0
    finished: bool = False

    def freeze(self) -> ReceiverResult:
        r = self.receiver
        return ReceiverResult(
            receiver=r.origin,
            index=r.index,
            signed=r.signed,
            **attrs.asdict(self, filter=lambda a, _v: a.name != "receiver"),
        )


@attrs.define(eq=False)
class _Series:
    request: NudgeRequest
    body: bytes
    tracks: list[_Track]
    started_at: float  # unix
    t0: float = 0.0  # trio.current_time() of the first send
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    first_accepted_at: float | None = None
    delay: float | None = None
    done: bool = False


class Nudger:
    """Owns the receivers, the HTTP client, the series and their nursery.

    Start with `await nursery.start(nudger.run)`; feed with `submit_nowait`. One series runs
    at a time: a request equal to the current series' (same promotion) is ignored, whether
    that series is running or finished; a request for a higher plan height, or the same
    height with another digest, cancels the current series and starts its own; a request
    for a lower height is ignored. `on_accepted` is called (synchronously, in the Nudger's
    task) once per series at the first 2xx from any receiver: the timeline's `nudged`. It
    is never called in DRY_RUN.
    """

    def __init__(
        self,
        receivers: Sequence[Receiver],
        *,
        metrics: FluxMetrics,
        schedule: NudgeSchedule | None = None,
        dry_run: bool = False,
        on_accepted: OnAccepted | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        queue_size: int = 16,
    ) -> None:
        self.receivers = tuple(receivers)
        self.dry_run = dry_run
        self._metrics, self._schedule = metrics, schedule or NudgeSchedule()
        self._on_accepted, self._transport = on_accepted, transport
        self._send_channel, self._receive_channel = trio.open_memory_channel[NudgeRequest](
            queue_size
        )
        self._series: _Series | None = None
        self._client: httpx.AsyncClient | None = None
        self._dropped = 0

    def __repr__(self) -> str:
        return f"Nudger({[r.origin for r in self.receivers]}, dry_run={self.dry_run})"

    # -- the caller's side ----------------------------------------------------------------

    def submit_nowait(self, request: NudgeRequest) -> bool:
        """Queue a settled promotion; never blocks. False (logged) if it had to be dropped."""
        try:
            self._send_channel.send_nowait(request)
        except trio.WouldBlock:
            reason = "queue full"
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            reason = "nudger not running"
        else:
            return True
        self._dropped += 1
        log.warning("flux_nudge_dropped", reason=reason, plan=request.plan, height=request.height)
        return False

    def snapshot(self) -> NudgeSnapshot:
        """The newest series as frozen values, for /status."""
        s = self._series
        if s is None:
            idle = tuple(_Track(r).freeze() for r in self.receivers)
            return NudgeSnapshot(dry_run=self.dry_run, receivers=idle, dropped=self._dropped)
        return NudgeSnapshot(
            dry_run=self.dry_run,
            receivers=tuple(t.freeze() for t in s.tracks),
            plan=s.request.plan,
            height=s.request.height,
            target_tag=s.request.target_tag,
            digest=s.request.digest,
            started_at=s.started_at,
            first_accepted_at=s.first_accepted_at,
            delay_seconds=s.delay,
            finished=s.done,
            dropped=self._dropped,
        )

    # -- the task -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Take requests until cancelled; each series runs in this task's nursery."""
        tokens = {r.token.reveal() for r in self.receivers if r.token is not None}
        for token in tokens:
            if (warning := token_warning(token)) is not None:
                log.warning("flux_receiver_token_newline", detail=warning)
        log.info(
            "flux_nudger_started",
            receivers=[r.origin for r in self.receivers],
            signed=bool(tokens),
            dry_run=self.dry_run,
        )
        client = httpx.AsyncClient(transport=self._transport, timeout=None, follow_redirects=False)
        async with client, trio.open_nursery() as nursery:
            self._client = client
            task_status.started()
            async with self._receive_channel:
                async for request in self._receive_channel:
                    self._take(request, nursery)

    def _take(self, request: NudgeRequest, nursery: trio.Nursery) -> None:
        current = self._series
        fields = {"plan": request.plan, "height": request.height, "digest": request.digest}
        if current is not None:
            if request == current.request:
                log.debug("flux_nudge_duplicate", **fields)
                return
            if request.height < current.request.height:
                log.info(
                    "flux_nudge_older_plan_ignored", current_plan=current.request.plan, **fields
                )
                return
            current.scope.cancel()
            log.info("flux_nudge_superseded", previous_plan=current.request.plan, **fields)
        at = request.at if request.at is not None else int(time.time())
        series = _Series(
            request=request,
            body=event_body(request, at),
            tracks=[_Track(r) for r in self.receivers],
            started_at=time.time(),
        )
        self._series = series
        nursery.start_soon(self._run_series, series)

    async def _run_series(self, series: _Series) -> None:
        with series.scope:
            series.t0 = trio.current_time()
            if self.dry_run:
                for track in series.tracks:
                    self._pretend(series, track)
            else:
                async with trio.open_nursery() as nursery:
                    for track in series.tracks:
                        nursery.start_soon(self._follow, series, track)
        series.done = True

    def _pretend(self, series: _Series, track: _Track) -> None:
        r = track.receiver
        log.info(
            "flux_nudge_dry_run",
            receiver=r.origin,
            receiver_index=r.index,
            signed=r.signed,
            offsets=list(self._schedule.offsets),
            body=series.body.decode("ascii"),
        )
        self._metrics.count("dry_run")
        track.outcome, track.at, track.finished = "dry_run", time.time(), True

    async def _follow(self, series: _Series, track: _Track) -> None:
        """One receiver's series: a send at each offset, until done or rejected."""
        last_end = -math.inf
        for offset in self._schedule.offsets:
            due = series.t0 + offset
            if due < last_end:
                continue  # overrun by the last send's retries, which stood in for it
            await trio.sleep_until(due)
            if await self._send(series, track) == "rejected":
                break
            last_end = trio.current_time()
        track.finished = True

    async def _send(self, series: _Series, track: _Track) -> str:
        """One scheduled send with its retries; returns accepted, rejected or failed."""
        sched, r = self._schedule, track.receiver
        began, wait, tries = trio.current_time(), sched.retry_initial, 0
        while True:
            status, error = await self._post(r, series.body)
            track.attempts += 1
            tries += 1
            track.status_code, track.error, track.at = status, error, time.time()
            verdict = classify(status)
            fields = {"receiver": r.origin, "receiver_index": r.index, "status": status}
            if verdict == "accepted":
                track.outcome = "accepted"
                track.accepted += 1
                self._metrics.count("accepted")
                self._accepted(series, track)
                return verdict
            if verdict == "rejected":
                track.outcome = "rejected"
                self._metrics.count("rejected")
                log.error(
                    "flux_nudge_rejected",
                    hint=rejection_hint(status),
                    plan=series.request.plan,
                    **fields,
                )
                return verdict
            if trio.current_time() + wait - began > sched.retry_budget:
                track.outcome = "failed"
                self._metrics.count("failed")
                log.warning("flux_nudge_failed", error=error, attempts=track.attempts, **fields)
                return "failed"
            track.outcome = "retry"
            self._metrics.count("retry")
            (log.warning if tries == 1 else log.debug)(
                "flux_nudge_retry", error=error, wait_seconds=wait, **fields
            )
            await trio.sleep(wait)
            wait = min(wait * 2, sched.retry_max)

    async def _post(self, receiver: Receiver, body: bytes) -> tuple[int | None, str | None]:
        """POST the body once; (status, None) or (None, why). Bounded by request_timeout."""
        assert self._client is not None
        headers = request_headers(receiver, body)
        with trio.move_on_after(self._schedule.request_timeout):
            try:
                response = await self._client.post(
                    receiver.url.reveal(), content=body, headers=headers
                )
            except httpx.HTTPError as exc:
                # Only the class name: httpx messages may quote the URL.
                return None, type(exc).__name__
            return response.status_code, None
        return None, "timeout"

    def _accepted(self, series: _Series, track: _Track) -> None:
        r, request = track.receiver, series.request
        first_of_receiver = track.accepted == 1
        (log.info if first_of_receiver else log.debug)(
            "flux_nudge_accepted",
            receiver=r.origin,
            receiver_index=r.index,
            plan=request.plan,
            sends=track.accepted,
        )
        if series.first_accepted_at is not None:
            return
        series.first_accepted_at = time.time()
        if request.block_h_seen_at is not None:
            series.delay = trio.current_time() - request.block_h_seen_at
            self._metrics.nudge_delay.set(series.delay)
        log.info(
            "flux_nudged", plan=request.plan, height=request.height, delay_seconds=series.delay
        )
        if self._on_accepted is not None:
            try:
                self._on_accepted(request, series.first_accepted_at)
            except Exception:
                # A timeline bug must not take the nudges (or the daemon) down with it.
                log.exception("flux_on_accepted_failed", plan=request.plan)

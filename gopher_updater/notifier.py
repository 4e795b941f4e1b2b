"""The notification task: never in the way of a poll, a retag or a nudge.

    Notifier.run (one nursery)
    ├── channel task "webhook"        bounded queue -> POST, retries with backoff
    ├── channel task "apprise:slack"  bounded queue -> Apprise in a thread, retries
    └── …                             one task and one queue per service

`notify_nowait` is synchronous and only filters, dedupes and `send_nowait`s into each
channel's queue: a full queue drops the event for that channel and counts it, so a slow,
failing or hanging service can delay only its own later messages, never the caller and never
another service. Each channel sends in order. Delivery is best-effort by design: these are
the human timeline, while what someone must act on goes through Prometheus alerts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Protocol

import attrs
import trio

from gopher_updater.logs import get_logger
from gopher_updater.notify import ALL_EVENT_TYPES, EventType, NotifyEvent
from gopher_updater.notify_status import OUTCOMES, ChannelStatus, NotifierStatus, NotifyMetrics
from gopher_updater.notify_webhook import Attempt

log = get_logger("gopher_updater.notify")

__all__ = [
    "Channel",
    "ChannelStatus",
    "Notifier",
    "NotifierStatus",
    "NotifyMetrics",
    "RetryPolicy",
]

QUEUE_SIZE = 64
DEDUPE_CAPACITY = 4096


class Channel(Protocol):
    """What the notifier needs of a service: a name safe to show, and one try at a send."""

    kind: str
    name: str
    target: str

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...

    async def send(self, event: NotifyEvent) -> Attempt: ...


@attrs.frozen
class RetryPolicy:
    """Bounded retries: 1 s doubling, at most `attempts` tries within `budget` seconds."""

    attempts: int = 5
    first_delay: float = 1.0
    max_delay: float = 30.0
    budget: float = 120.0
    attempt_timeout: float = 10.0

    def delays(self) -> list[float]:
        """The waits between tries, already cut to the budget (for docs and tests)."""
        out: list[float] = []
        delay, spent = self.first_delay, 0.0
        for _ in range(self.attempts - 1):
            if spent + delay > self.budget:
                break
            out.append(delay)
            spent += delay
            delay = min(delay * 2, self.max_delay)
        return out


@attrs.define
class _ChannelState:
    channel: Channel
    send: trio.MemorySendChannel[NotifyEvent]
    receive: trio.MemoryReceiveChannel[NotifyEvent]
    available: bool = True
    in_flight: NotifyEvent | None = None  # taken off the queue, not yet settled
    last_event: str | None = None
    last_outcome: str | None = None
    last_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    counts: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def snapshot(self) -> ChannelStatus:
        c = self.channel
        return ChannelStatus(
            name=c.name,
            kind=c.kind,
            target=c.target,
            available=self.available,
            last_event=self.last_event,
            last_outcome=self.last_outcome,
            last_at=self.last_at,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            counts=tuple(self.counts.items()),
        )


class Notifier:
    """Fans events out to every channel; see the module docstring for the guarantees."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        events: Iterable[EventType] = ALL_EVENT_TYPES,
        metrics: NotifyMetrics | None = None,
        policy: RetryPolicy | None = None,
        queue_size: int = QUEUE_SIZE,
        dedupe_capacity: int = DEDUPE_CAPACITY,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._states = []
        for channel in channels:
            send, receive = trio.open_memory_channel[NotifyEvent](queue_size)
            self._states.append(_ChannelState(channel=channel, send=send, receive=receive))
        self._events = frozenset(events)
        self._metrics = metrics
        self._policy = policy or RetryPolicy()
        self._seen: dict[tuple[str, str, str, int, str], None] = {}
        self._dedupe_capacity = dedupe_capacity
        self._wall = wall_clock
        self._filtered = 0
        self._deduplicated = 0

    # ------------------------------------------------------------------ caller side

    def notify_nowait(self, event: NotifyEvent) -> bool:
        """Queue `event` for every channel; never blocks, never raises for a channel's sake.

        Returns False when the event was filtered out or already sent for this plan.
        """
        if event.type not in self._events:
            self._filtered += 1
            return False
        key = (event.chain_id, *event.dedupe_key)
        if key in self._seen:
            self._deduplicated += 1
            log.debug("notification_duplicate", event_type=event.type.value, plan=event.plan[:64])
            return False
        self._seen[key] = None
        if len(self._seen) > self._dedupe_capacity:
            del self._seen[next(iter(self._seen))]
        for state in self._states:
            try:
                if not state.available:
                    raise trio.BrokenResourceError
                state.send.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self._record(state, event, "dropped", "queue full or channel unavailable")
        return True

    def close(self) -> None:
        """No more events: `run` returns once every queue is delivered (or given up on)."""
        for state in self._states:
            state.send.close()

    def pending(self) -> int:
        """Events queued or being sent, over all channels (what a shutdown would lose)."""
        return sum(
            s.receive.statistics().current_buffer_used + (s.in_flight is not None)
            for s in self._states
        )

    def status(self) -> NotifierStatus:
        return NotifierStatus(
            channels=tuple(s.snapshot() for s in self._states),
            events=tuple(t.value for t in EventType if t in self._events),
            filtered=self._filtered,
            deduplicated=self._deduplicated,
        )

    # ------------------------------------------------------------------ task side

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Started at once: each channel sets itself up in its own task (Apprise's import
        takes a moment), and events queued meanwhile wait in its queue."""
        async with trio.open_nursery() as nursery:
            for state in self._states:
                nursery.start_soon(self._channel_task, state, name=f"notify:{state.channel.name}")
            task_status.started()

    async def _channel_task(self, state: _ChannelState) -> None:
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(state.channel)
            except Exception as exc:  # a broken channel must not take the daemon down
                state.available = False
                state.last_error = f"unavailable: {type(exc).__name__}"
                state.last_error_at = self._wall()
                log.error(
                    "notification_channel_unavailable",
                    channel=state.channel.name,
                    error=type(exc).__name__,
                )
            async with state.receive:
                try:
                    async for event in state.receive:
                        state.in_flight = event
                        if state.available:
                            await self._deliver(state, event)
                        else:
                            self._record(state, event, "dropped", state.last_error or "unavailable")
                        state.in_flight = None
                finally:
                    self._give_up(state)

    def _give_up(self, state: _ChannelState) -> None:
        """Cancelled (shutdown): what was being sent and what is still queued is dropped,
        each counted and logged, so the operator knows which messages never went out."""
        left = [] if state.in_flight is None else [state.in_flight]
        state.in_flight = None
        with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            while True:
                left.append(state.receive.receive_nowait())
        for event in left:
            self._record(state, event, "dropped", "not delivered at shutdown")

    async def _try(self, channel: Channel, event: NotifyEvent) -> Attempt:
        with trio.move_on_after(self._policy.attempt_timeout):
            try:
                return await channel.send(event)
            except Exception as exc:  # a channel bug counts as a failed try, nothing more
                return Attempt(ok=False, retryable=True, detail=type(exc).__name__)
        return Attempt(ok=False, retryable=True, detail="timeout")

    async def _deliver(self, state: _ChannelState, event: NotifyEvent) -> None:
        delays = self._policy.delays()
        tries = 0
        while True:
            tries += 1
            attempt = await self._try(state.channel, event)
            if attempt.ok:
                self._record(state, event, "sent", None, tries=tries)
                return
            if not attempt.retryable:
                self._record(state, event, "rejected", attempt.detail, tries=tries)
                return
            if tries > len(delays):
                self._record(state, event, "failed", attempt.detail, tries=tries)
                return
            self._count(state, event, "retry")
            log.info(
                "notification_retry",
                channel=state.channel.name,
                event_type=event.type.value,
                error=attempt.detail,
                delay=delays[tries - 1],
            )
            await trio.sleep(delays[tries - 1])

    def _count(self, state: _ChannelState, event: NotifyEvent, outcome: str) -> None:
        state.counts[outcome] += 1
        if self._metrics is not None:
            self._metrics.count(state.channel.name, event.type, outcome)

    def _record(
        self,
        state: _ChannelState,
        event: NotifyEvent,
        outcome: str,
        error: str | None,
        *,
        tries: int = 0,
    ) -> None:
        now = self._wall()
        self._count(state, event, outcome)
        state.last_event, state.last_outcome, state.last_at = event.type.value, outcome, now
        fields: dict[str, Any] = {
            "channel": state.channel.name,
            "target": state.channel.target,
            "event_type": event.type.value,
            "plan": event.plan[:64],
            "height": event.height,
        }
        if error is None:
            log.info("notification_sent", tries=tries, **fields)
            return
        state.last_error, state.last_error_at = error, now
        log.warning(f"notification_{outcome}", error=error, tries=tries, **fields)

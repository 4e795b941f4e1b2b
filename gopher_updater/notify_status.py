"""What the notifier shows: its Prometheus counter and the frozen snapshot for `/status`.

Only names safe to show get here: a channel's name (`webhook`, `apprise:slack`), its
target (scheme and host for the webhook, the scheme alone for Apprise, whose URLs keep
tokens even in the host part) and redacted errors (a status code, an exception class name,
`timeout`). A failing channel is reported here and never in `/readyz`: a chat service being
down says nothing about whether the daemon can promote, and must not mark it unready.
"""

from __future__ import annotations

from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Counter

from gopher_updater.notify import EventType

OUTCOMES = ("sent", "retry", "failed", "rejected", "dropped")


class NotifyMetrics:
    """`gopher_updater_notifications_total{channel,event,outcome}` in the daemon's registry.

    `outcome` per event and channel: `sent`, `failed` (retries exhausted), `rejected` (the
    service refused it: not retried), `dropped` (queue full or channel unavailable); and
    `retry` once per extra try, so a flapping service shows before it fails.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "gopher_updater_notifications",
            "Notifications by channel, event type and outcome",
            ["channel", "event", "outcome"],
            registry=registry,
        )

    def count(self, channel: str, event: EventType, outcome: str) -> None:
        self.notifications.labels(channel=channel, event=event.value, outcome=outcome).inc()


@attrs.frozen
class ChannelStatus:
    """One service as `/status` shows it: scheme or host only, and the redacted last error."""

    name: str
    kind: str
    target: str
    available: bool
    last_event: str | None
    last_outcome: str | None
    last_at: float | None
    last_error: str | None
    last_error_at: float | None
    counts: tuple[tuple[str, int], ...]

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "counts": dict(self.counts)}


@attrs.frozen
class NotifierStatus:
    channels: tuple[ChannelStatus, ...]
    events: tuple[str, ...]
    filtered: int
    deduplicated: int

    @property
    def failing(self) -> bool:
        """True while any channel's latest delivery failed: for `/status`, never `/readyz`."""
        return any(
            not c.available or c.last_outcome in ("failed", "rejected", "dropped")
            for c in self.channels
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "failing": self.failing,
            "events": list(self.events),
            "filtered": self.filtered,
            "deduplicated": self.deduplicated,
            "channels": [c.to_json() for c in self.channels],
        }

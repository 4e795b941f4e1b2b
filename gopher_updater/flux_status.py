"""What a nudge is about, what it sends, and what it reports: values, body and metrics.

Kept apart from the Nudger's task logic so the integrator can build requests, render
/status and register metrics without touching the concurrency.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge

_NS = "gopher_updater"

#: Outcomes of `gopher_updater_flux_nudges_total`, one per request made (or not made):
#: accepted: 2xx; retry: a retryable answer or error, tried again; rejected: a configuration
#: error (400, 413, other 4xx), not retried, ends that receiver's series; failed: retryable
#: answers until the retry budget ran out; dry_run: DRY_RUN, nothing sent.
OUTCOMES = ("accepted", "retry", "rejected", "failed", "dry_run")


@attrs.frozen
class NudgeSchedule:
    """When to send and how hard to retry. Tests shrink it; the daemon uses the defaults.

    `offsets` are seconds after the series starts. Offsets a send's retries overran are
    skipped (that send stood in for them), so a series never bursts after a slow send.
    """

    offsets: tuple[float, ...] = (0.0, 10.0, 30.0, 60.0, 120.0)
    retry_initial: float = 1.0
    retry_max: float = 32.0
    retry_budget: float = 120.0
    request_timeout: float = 10.0


@attrs.frozen
class NudgeRequest:
    """A settled promotion the Flux receivers should hear about.

    Equality (and so deduplication) is by what was promoted: chain, plan, height, repository,
    target tag and digest. `block_h_seen_at` is trio.current_time() when this process saw
    block H with the plan current (None when it never did, e.g. found already promoted at
    catch-up); it only feeds the delay metric. `at` is the unix time the promotion settled,
    sent as the event's `at`; None means "when the Nudger takes the request".
    """

    chain_id: str
    plan: str
    height: int
    repository: str
    target_tag: str
    digest: str
    block_h_seen_at: float | None = attrs.field(default=None, eq=False)
    at: int | None = attrs.field(default=None, eq=False)

    @property
    def key(self) -> tuple[str, str, int, str, str, str]:
        return (
            self.chain_id,
            self.plan,
            self.height,
            self.repository,
            self.target_tag,
            self.digest,
        )


def event_body(request: NudgeRequest, at: int) -> bytes:
    """The JSON event, serialised once: these exact bytes are signed and sent every time.

    Compact and ASCII-only so the bytes do not depend on a JSON library's defaults; the
    notification-controller ignores the body unless a CEL filter reads it.
    """
    event = {
        "type": "promoted",
        "chain_id": request.chain_id,
        "plan": request.plan,
        "height": request.height,
        "repository": request.repository,
        "target_tag": request.target_tag,
        "digest": request.digest,
        "at": at,
    }
    return json.dumps(event, separators=(",", ":"), ensure_ascii=True).encode("ascii")


@attrs.frozen
class ReceiverResult:
    """One receiver's standing in the current series, for /status. No URL path, no token.

    `outcome` is the last request's outcome (see OUTCOMES; `pending` before the first),
    `status_code` the last HTTP status (None: no answer, then `error` says why: `timeout`,
    or the transport error's class name). `attempts` counts requests in this series,
    `accepted` the 2xx among them. `at` is the unix time of the last result.
    """

    receiver: str
    index: int
    signed: bool
    outcome: str = "pending"
    status_code: int | None = None
    error: str | None = None
    at: float | None = None
    attempts: int = 0
    accepted: int = 0
    finished: bool = False

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class NudgeSnapshot:
    """The Nudger as /status shows it: the newest series (if any) and every receiver in it.

    `first_accepted_at` is the unix time of the series' first 2xx and `delay_seconds` the
    time from block H seen to it; `dropped` counts requests lost to a full queue since start.
    """

    dry_run: bool
    receivers: tuple[ReceiverResult, ...]
    plan: str | None = None
    height: int | None = None
    target_tag: str | None = None
    digest: str | None = None
    started_at: float | None = None
    first_accepted_at: float | None = None
    delay_seconds: float | None = None
    finished: bool = False
    dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = attrs.asdict(self, recurse=False)
        out["receivers"] = [r.to_dict() for r in self.receivers]
        return out


class FluxMetrics:
    """The nudge's two metrics, registered into the daemon's registry.

    `gopher_updater_flux_nudge_delay_seconds` is a Gauge holding the last upgrade's delay
    (block H seen → first accepted nudge), like the timeline's other per-upgrade figures:
    upgrades come months apart, so a histogram would hold one sample per bucket set and say
    less than the number itself. 0 until the first accepted nudge.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.nudges = Counter(
            f"{_NS}_flux_nudges",
            "Flux Receiver requests by outcome (accepted, retry, rejected, failed, dry_run)",
            ["outcome"],
            registry=registry,
        )
        self.nudge_delay = Gauge(
            f"{_NS}_flux_nudge_delay_seconds",
            "Seconds from block H seen to the first accepted Flux nudge, last upgrade",
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.nudges.labels(outcome=outcome)

    def count(self, outcome: str) -> None:
        self.nudges.labels(outcome=outcome).inc()

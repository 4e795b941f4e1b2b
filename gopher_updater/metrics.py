"""Prometheus metrics, one registry per daemon so in-process tests don't share counters.

Each metric has one writer, the task that owns the fact: the poller the chain gauges and poll
counters, the retag worker `retags`, the registry watch `source_tag_present`, the registry
client (through the daemon's hook) `registry_requests`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gopher_updater import __version__
from gopher_updater.manifest import Outcome

_NS = "gopher_updater"


class Metrics:
    def __init__(self) -> None:
        # `_created` series double the scrape size and carry nothing an operator alerts on.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.chain_height = Gauge(
            f"{_NS}_chain_height", "Latest block height seen on the chain", registry=r
        )
        self.upgrade_height = Gauge(
            f"{_NS}_upgrade_height", "Height of the current upgrade plan (0: none)", registry=r
        )
        self.upgrade_eta = Gauge(
            f"{_NS}_upgrade_eta_seconds",
            "Estimated seconds until the current plan's height (0: none or reached)",
            registry=r,
        )
        self.block_time = Gauge(
            f"{_NS}_block_time_seconds", "Estimated block time from observed heights", registry=r
        )
        self.polls = Counter(
            f"{_NS}_polls", "Chain polls by result (ok, error)", ["result"], registry=r
        )
        self.poll_duration = Histogram(
            f"{_NS}_poll_duration_seconds",
            "Duration of one chain poll",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.retags = Counter(f"{_NS}_retags", "Retag attempts by outcome", ["outcome"], registry=r)
        self.source_tag_present = Gauge(
            f"{_NS}_source_tag_present",
            "1 if the source tag exists in the registry; upgrade: scheduled (the current plan) "
            "or upcoming (from governance)",
            ["tag", "upgrade"],
            registry=r,
        )
        self.registry_requests = Counter(
            f"{_NS}_registry_requests",
            "Registry HTTP requests by method and status code",
            ["method", "code"],
            registry=r,
        )
        self.last_successful_poll = Gauge(
            f"{_NS}_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful chain poll",
            registry=r,
        )
        # Written by the pool (lcd_pool.py); label = scheme://host:port, never credentials.
        self.lcd_up = Gauge(
            f"{_NS}_lcd_up",
            "1 if the LCD endpoint answered its last poll",
            ["endpoint"],
            registry=r,
        )
        self.lcd_height = Gauge(
            f"{_NS}_lcd_height", "Highest height the LCD endpoint showed", ["endpoint"], registry=r
        )
        self.lcd_requests = Counter(
            f"{_NS}_lcd_requests",
            "LCD reads by endpoint, route (proposals: one listing) and result",
            ["endpoint", "route", "result"],
            registry=r,
        )
        self.build_info = Info(f"{_NS}_build", "Build information", registry=r)
        self.build_info.info({"version": __version__})
        for result in ("ok", "error"):
            self.polls.labels(result=result)
        for outcome in (*(o.value for o in Outcome), "error"):  # "error": no outcome at all
            self.retags.labels(outcome=outcome)
        # -- after the retag: the follower's, and the scrape-time health
        self.upgrade = UpgradeMetrics(r)
        self.health = HealthCollector()
        r.register(self.health)

    # The pool's `Counts` sink.
    def lcd_request(self, endpoint: str, route: str, result: str) -> None:
        self.lcd_requests.labels(endpoint=endpoint, route=route, result=result).inc()

    def lcd_state(self, endpoint: str, up: bool, height: int | None) -> None:
        self.lcd_up.labels(endpoint=endpoint).set(1 if up else 0)
        if height is not None:
            self.lcd_height.labels(endpoint=endpoint).set(height)

    def render(self) -> bytes:
        return generate_latest(self.registry)


# --- after the retag ----------------------------------------------------------------------

#: The timeline's states (timeline.Stage), one `gopher_updater_upgrade_state` series each.
UPGRADE_STATES = ("halted", "promoted", "nudged", "node_upgraded", "resumed", "stuck")
#: `gopher_updater_problem{kind}` (state.PROBLEM_KINDS), one series each from the start.
PROBLEM_KINDS = ("conflict", "invalid_plan_name", "source_missing", "promotion_error")


class UpgradeMetrics:
    """The upgrade follower's metrics (its only writer): state, halt duration, delay."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.state = Gauge(
            f"{_NS}_upgrade_state",
            "1 for the newest upgrade's current timeline state, 0 for the others",
            ["state"],
            registry=registry,
        )
        self.halt_duration = Gauge(
            f"{_NS}_upgrade_halt_duration_seconds",
            "Seconds from the halt to the first block above H, last upgrade",
            registry=registry,
        )
        self.promotion_delay = Gauge(
            f"{_NS}_promotion_delay_seconds",
            "Seconds from block H seen to the target tag written, last upgrade",
            registry=registry,
        )
        for state in UPGRADE_STATES:
            self.state.labels(state=state).set(0)


#: (ready as /readyz would answer, kinds of the standing problems), computed at scrape time.
HealthSource = Callable[[], tuple[bool, frozenset[str]]]


class HealthCollector(Collector):
    """`gopher_updater_ready` and `gopher_updater_problem{kind}`, read from the published
    views when scraped (`bind`), so they can never disagree with /readyz and /status."""

    def __init__(self) -> None:
        self._source: HealthSource | None = None

    def bind(self, source: HealthSource) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ready, kinds = (False, frozenset[str]()) if self._source is None else self._source()
        yield GaugeMetricFamily(
            f"{_NS}_ready", "1 when /readyz answers 200, else 0", value=1 if ready else 0
        )
        problem = GaugeMetricFamily(
            f"{_NS}_problem", "1 while a problem of this kind stands, else 0", labels=["kind"]
        )
        for kind in PROBLEM_KINDS:
            problem.add_metric([kind], 1 if kind in kinds else 0)
        yield problem

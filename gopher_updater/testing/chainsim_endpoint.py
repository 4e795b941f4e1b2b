"""One LCD node of a simulated chain: its own HTTP server, port, view, faults and stats.

Why apart from the chain: a real deployment watches several nodes of ONE chain, and what
goes wrong at the halt is per node. One is a few blocks behind (`lag`, it never shows the
halt; or `delay`, it shows each block seconds late and catches up once the chain stops),
one is restarting when pods roll (`go_down`/`come_up`, or `down_at(height, duration=...)`:
the port refuses connections, as a restarting pod's does), one answers 5xx, 501 or hangs
(`set_fault`). Each endpoint counts its own requests and bytes, so a test can tell how
hard the client leaned on which node.

A lagging endpoint serves the chain's plan, heights and applied plans as they were at the
height it has reached; governance listings always come from the chain's present state.
"""

from __future__ import annotations

import enum
import random
import urllib.parse
from typing import TYPE_CHECKING

import attrs
import trio

from gopher_updater.testing import chainsim_lcd as lcd
from gopher_updater.testing.chainsim_http import Exchange, Header, Request, RouteStats
from gopher_updater.testing.chainsim_http import serve_connection as _serve_connection

if TYPE_CHECKING:
    from gopher_updater.testing.chainsim import ChainSim
    from gopher_updater.testing.chainsim_chain import ChainView

CURRENT_PLAN = "current_plan"
APPLIED_PLAN = "applied_plan"
BLOCKS_LATEST = "blocks_latest"
SYNCING = "syncing"
GOV_V1_PROPOSALS = "gov_v1_proposals"
GOV_V1BETA1_PROPOSALS = "gov_v1beta1_proposals"
UNKNOWN = "unknown"
ROUTES = (
    CURRENT_PLAN,
    APPLIED_PLAN,
    BLOCKS_LATEST,
    SYNCING,
    GOV_V1_PROPOSALS,
    GOV_V1BETA1_PROPOSALS,
    UNKNOWN,
)

_FIXED_PATHS = {
    ("cosmos", "upgrade", "v1beta1", "current_plan"): CURRENT_PLAN,
    ("cosmos", "base", "tendermint", "v1beta1", "blocks", "latest"): BLOCKS_LATEST,
    ("cosmos", "base", "tendermint", "v1beta1", "syncing"): SYNCING,
    ("cosmos", "gov", "v1", "proposals"): GOV_V1_PROPOSALS,
    ("cosmos", "gov", "v1beta1", "proposals"): GOV_V1BETA1_PROPOSALS,
}
_APPLIED_PLAN_PREFIX = ("cosmos", "upgrade", "v1beta1", "applied_plan")

_TRICKLE_INTERVAL = 0.5
_GARBAGE_BODY = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


class Fault(enum.Enum):
    """Misbehaviour injected before a route's normal handling."""

    HTTP_500 = "500"  # {"code":13,"message":"internal error"}, status 500
    HTTP_501 = "501"  # the gateway's real "Not Implemented" (a node without the route)
    HTTP_503 = "503"  # {"code":14,"message":"unavailable"}, status 503
    HANG = "hang"  # read the request, never answer (until the client goes away)
    GARBAGE = "garbage"  # 200, text/html, not JSON (a misconfigured proxy)
    TRUNCATED = "truncated"  # full Content-Length, half the body, close
    RESET = "reset"  # close with a TCP RST, no answer
    TRICKLE = "trickle"  # headers, then one body byte every 0.5 s


@attrs.define
class _FaultRule:
    fault: Fault
    rate: float
    remaining: int | None


def route_of(path: str) -> tuple[str, str | None]:
    """Route name and (for applied_plan) the percent-decoded plan name."""
    segments = tuple(urllib.parse.unquote(s) for s in path.split("/")[1:])
    if segments in _FIXED_PATHS:
        return _FIXED_PATHS[segments], None
    if len(segments) == 5 and segments[:4] == _APPLIED_PLAN_PREFIX and segments[4]:
        return APPLIED_PLAN, segments[4]
    return UNKNOWN, None


class LcdEndpoint:
    """One node's LCD. Create with `ChainSim.endpoint(...)`; serve with `nursery.start(ep.run)`.

    lag: blocks behind the chain, for good (a stuck-behind backend: at the halt it shows
    H - lag). delay: seconds behind (it sees every block `delay` s late, and reaches H that
    long after the halt). Both 0 = the chain's live state.
    """

    def __init__(
        self,
        chain: ChainSim,
        *,
        lag: int = 0,
        delay: float = 0.0,
        height_header: str | None = "Grpc-Metadata-X-Cosmos-Block-Height",
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if lag < 0 or not delay >= 0:
            raise ValueError(f"lag and delay must be >= 0, got {lag} and {delay}")
        self.chain = chain
        self.lag = lag
        self.delay = delay
        self.height_header = height_header
        #: A lying node: it shows the chain `ahead` blocks further than it is (the halt
        #: early, with the plan still current), for quorum tests. 0 = honest.
        self.ahead = 0
        self.url = ""
        self.stats: dict[str, RouteStats] = {route: RouteStats() for route in ROUTES}
        #: TCP connections accepted so far (keep-alive makes this far below the requests).
        self.connections = 0
        #: False while the endpoint is down (its port refuses connections).
        self.up = False
        self.host = host
        self._port = port
        self._rng = random.Random(seed)
        self._faults: dict[str, _FaultRule] = {}
        self._nursery: trio.Nursery | None = None
        self._serving: trio.CancelScope | None = None
        self._schedule: list[tuple[int, float | None]] = []
        self._up_changed = trio.Event()

    # --- faults and stats ----------------------------------------------------------------

    def set_fault(
        self, route: str, fault: Fault | None, *, rate: float = 1.0, count: int | None = None
    ) -> None:
        """Inject `fault` on `route` (a route name or "*"); None removes it.

        Each request the rule covers fails with probability `rate` (seeded RNG). With
        `count`, the rule covers only the next `count` requests of that route, then lifts.
        A route's own rule takes precedence over "*".
        """
        if route != "*" and route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; expected '*' or one of {ROUTES}")
        if fault is None:
            self._faults.pop(route, None)
            return
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], got {rate}")
        if count is not None and count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self._faults[route] = _FaultRule(fault=fault, rate=rate, remaining=count)

    def _draw_fault(self, route: str) -> Fault | None:
        key = route if route in self._faults else "*"
        rule = self._faults.get(key)
        if rule is None:
            return None
        if rule.remaining is not None:
            rule.remaining -= 1
            if rule.remaining <= 0:
                del self._faults[key]
        return rule.fault if self._rng.random() < rule.rate else None

    def stats_total(self) -> RouteStats:
        return RouteStats(
            requests=sum(s.requests for s in self.stats.values()),
            bytes_out=sum(s.bytes_out for s in self.stats.values()),
        )

    def reset_stats(self) -> None:
        for stats in self.stats.values():
            stats.requests = stats.bytes_out = 0

    # --- up and down ---------------------------------------------------------------------

    def go_down(self) -> None:
        """Stop listening and drop every connection now: the port refuses, like a restart."""
        if self._serving is not None:
            self._serving.cancel()
            self._serving = None
        self._set_up(False)

    def _set_up(self, up: bool) -> None:
        self.up = up
        self._up_changed.set()
        self._up_changed = trio.Event()

    async def wait_up(self, up: bool = True) -> None:
        """Return once the endpoint is up (or, with `up=False`, down)."""
        while self.up != up:
            await self._up_changed.wait()

    async def come_up(self) -> None:
        """Listen again on the same port; returns once connections are accepted."""
        if self._nursery is None:
            raise RuntimeError("the endpoint is not running (nursery.start(endpoint.run))")
        if self._serving is None:
            await self._nursery.start(self._serve)

    def down_at(self, height: int, *, duration: float | None = None) -> None:
        """Go down once the chain reaches `height`; come back `duration` s later (None: never).

        Takes effect while the endpoint runs (call it before or after `run`).
        """
        if duration is not None and not duration >= 0:
            raise ValueError(f"duration must be >= 0, got {duration}")
        self._schedule.append((height, duration))
        if self._nursery is not None:
            self._nursery.start_soon(self._down_at, height, duration)

    async def _down_at(self, height: int, duration: float | None) -> None:
        await self.chain.wait_until(lambda chain: chain.height >= height)
        self.go_down()
        if duration is not None:
            await trio.sleep(duration)
            await self.come_up()

    # --- serving -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `task_status.started(url)`. Does not produce blocks."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(trio.sleep_forever)  # stays open to come up again when down
            await nursery.start(self._serve)
            for height, duration in self._schedule:
                nursery.start_soon(self._down_at, height, duration)
            task_status.started(self.url)

    async def _serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(self._port, host=self.host)
        self._port = listeners[0].socket.getsockname()[1]
        self.url = f"http://{self.host}:{self._port}"
        with trio.CancelScope() as scope:
            self._serving = scope
            self._set_up(True)
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._serve_connection, listeners)
                task_status.started()

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        await _serve_connection(stream, self._handle)

    async def _handle(self, request: Request, exchange: Exchange) -> None:
        path, _, query = request.target.partition("?")
        route, plan_name = route_of(path)
        stats = self.stats[route]
        stats.requests += 1
        exchange.stats = stats
        view = self.chain.view(lag=self.lag, delay=self.delay)
        if self.ahead:
            height = view.height + self.ahead
            halted = view.plan is not None and height >= view.plan.height
            view = attrs.evolve(view, height=height, app_height=height - 1 if halted else height)
        fault = self._draw_fault(route)
        if fault is Fault.RESET:
            await exchange.reset()
        elif fault is Fault.HANG:
            await exchange.hang()
        elif fault is Fault.GARBAGE:
            await exchange.send(200, [("Content-Type", "text/html")], _GARBAGE_BODY)
        elif fault is Fault.HTTP_500:
            err = lcd.LcdError(500, 13, "internal error", via_grpc=True)
            await self._send(exchange, lcd.error_answer(err), view)
        elif fault is Fault.HTTP_501:
            await self._send(exchange, lcd.not_implemented(), view)
        elif fault is Fault.HTTP_503:
            err = lcd.LcdError(503, 14, "unavailable", via_grpc=True)
            await self._send(exchange, lcd.error_answer(err), view)
        else:
            answer = self._answer(request.method, route, plan_name, query, view)
            headers = self._headers(answer, view)
            if fault is Fault.TRUNCATED:
                await exchange.send_truncated(answer.status, headers, answer.body)
            elif fault is Fault.TRICKLE:
                await exchange.send_trickle(answer.status, headers, answer.body, _TRICKLE_INTERVAL)
            else:
                await exchange.send(answer.status, headers, answer.body)

    async def _send(self, exchange: Exchange, answer: lcd.Answer, view: ChainView) -> None:
        await exchange.send(answer.status, self._headers(answer, view), answer.body)

    def _headers(self, answer: lcd.Answer, view: ChainView) -> list[Header]:
        headers: list[Header] = [("Content-Type", answer.content_type)]
        if answer.via_grpc:
            headers.append(("Grpc-Metadata-Content-Type", "application/grpc"))
            if self.height_header is not None:
                headers.append((self.height_header, str(view.app_height)))
        return headers

    def _answer(
        self, method: str, route: str, plan_name: str | None, query: str, view: ChainView
    ) -> lcd.Answer:
        chain = self.chain
        if method != "GET" or route == UNKNOWN:
            return lcd.not_implemented()
        if route == CURRENT_PLAN:
            return lcd.Answer(200, lcd.current_plan_body(view.plan))
        if route == APPLIED_PLAN:
            assert plan_name is not None
            return lcd.Answer(200, lcd.applied_plan_body(chain.applied_in(view, plan_name)))
        if route == BLOCKS_LATEST:
            return lcd.Answer(200, chain.block_body(view))
        if route == SYNCING:
            return lcd.Answer(200, lcd.encode_json({"syncing": chain.syncing}))
        if route == GOV_V1_PROPOSALS and not chain.gov_v1:
            return lcd.not_implemented()
        return chain.gov.answer(route == GOV_V1BETA1_PROPOSALS, query)

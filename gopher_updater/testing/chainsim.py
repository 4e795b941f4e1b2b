"""A Cosmos SDK LCD simulator over real HTTP on loopback: the chain in every test and demo.

It reproduces what the daemon must get right (reference: cosmos-lcd.md):
- x/upgrade: one plan at a time, overwritten by a re-schedule, cleared by a cancel or by the
  new binary, which records `applied_plan/{name}` = H;
- the halt: the block store reaches H and stops while the app stays at H-1 (the height
  header), and the LCD keeps answering;
- gov v1 / v1beta1 listings with the SDK's real pagination (and the v0.50 filter bug), the
  v1 -> v1beta1 conversion and its whole-page failure, 501 for routes a chain lacks;
- transport faults injected per route (`Fault`), so the client's retries can be tested.

State lives on the object and is read and written from the test's trio thread; block
production runs on trio's clock so it also works under `MockClock`.

Usage: `url = await nursery.start(sim.run)`; or `python -m gopher_updater.testing.chainsim`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import enum
import functools
import json
import math
import random
import time
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import trio

from gopher_updater.model import Plan, ProposalStatus
from gopher_updater.testing import chainsim_lcd as lcd
from gopher_updater.testing.chainsim_http import Exchange, Header, Request, RouteStats
from gopher_updater.testing.chainsim_http import serve_connection as _serve_connection

__all__ = [
    "ROUTES",
    "ChainSim",
    "Fault",
    "RouteStats",
    "load_cosmoshub_proposals",
]

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
_ANSWER_CACHE_SIZE = 256


class Fault(enum.Enum):
    """Misbehaviour injected before a route's normal handling."""

    HTTP_500 = "500"  # {"code":13,"message":"internal error"}, status 500
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


def _route_of(path: str) -> tuple[str, str | None]:
    """Route name and (for applied_plan) the percent-decoded plan name."""
    segments = tuple(urllib.parse.unquote(s) for s in path.split("/")[1:])
    if segments in _FIXED_PATHS:
        return _FIXED_PATHS[segments], None
    if len(segments) == 5 and segments[:4] == _APPLIED_PLAN_PREFIX and segments[4]:
        return APPLIED_PLAN, segments[4]
    return UNKNOWN, None


def _format_time(unix: float) -> str:
    """RFC 3339 with nanoseconds, trailing zeros trimmed (Go's `time.RFC3339Nano`)."""
    whole = math.floor(unix)
    nanos = round((unix - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    stamp = datetime.datetime.fromtimestamp(whole, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # outside trio.run (e.g. a sim built in a sync fixture)
        return 0.0


class ChainSim:
    """One LCD node of a simulated chain. See the module docstring."""

    def __init__(
        self,
        *,
        height: int = 1000,
        block_time: float = 1.0,
        proposals: list[dict[str, Any]] | None = None,
        proposals_v1beta1: list[dict[str, Any]] | None = None,
        gov_v1: bool = True,
        filtered_pagination_bug: bool = False,
        height_header: str | None = "Grpc-Metadata-X-Cosmos-Block-Height",
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if height < 1:
            raise ValueError(f"height must be >= 1, got {height}")
        self._changed = trio.Event()
        self._last_block_at = 0.0
        # Block times: the wall clock when the sim started plus trio's clock since then, so
        # they look live on a real clock and still move with a MockClock.
        self._wall_epoch = time.time()
        self._trio_epoch = _now()
        self._block_time_str = self._timestamp(self._trio_epoch)
        self._height = height
        #: Last committed app height (the height header); H-1 while halted at H.
        self.app_height = height
        self._plan: Plan | None = None
        self.applied: dict[str, int] = {}
        self._block_time = math.inf
        self.block_time = block_time
        self.height_reached_at: dict[int, float] = {}
        self.syncing = False
        self.gov_v1 = gov_v1
        self.filtered_pagination_bug = filtered_pagination_bug
        self.height_header = height_header
        self.url = ""
        self.stats: dict[str, RouteStats] = {route: RouteStats() for route in ROUTES}
        #: TCP connections accepted so far (keep-alive makes this far below the requests).
        self.connections = 0
        self._host = host
        self._port = port
        self._rng = random.Random(seed)
        self._faults: dict[str, _FaultRule] = {}
        self._v1: dict[int, dict[str, Any]] = {}
        self._v1beta1: dict[int, dict[str, Any]] | None = None
        for item in proposals or ():
            self._v1[int(item["id"])] = item
        if proposals_v1beta1 is not None:
            self._v1beta1 = {int(item["proposal_id"]): item for item in proposals_v1beta1}
        self._answer_cache: dict[tuple[str, str, bool], lcd.Answer] = {}
        self._block_cache: tuple[int, str, bytes] | None = None

    # --- chain state ---------------------------------------------------------------------

    @property
    def height(self) -> int:
        """Block-store height (what `blocks/latest` reports)."""
        return self._height

    @height.setter
    def height(self, value: int) -> None:
        """Jump the chain to `value`; app_height follows (H-1 if that is the plan's halt)."""
        self._height = value
        self.app_height = value - 1 if self.halted else value
        self.height_reached_at.setdefault(value, _now())
        self._block_time_str = self._timestamp(_now())
        self._poke()

    @property
    def plan(self) -> Plan | None:
        return self._plan

    @plan.setter
    def plan(self, value: Plan | None) -> None:
        """Set without x/upgrade's checks (use `schedule_plan` for the real rules)."""
        self._plan = value
        self._poke()

    @property
    def block_time(self) -> float:
        return self._block_time

    @block_time.setter
    def block_time(self, value: float) -> None:
        """Seconds per block; `math.inf` stops production. Takes effect at once."""
        if not value > 0:
            raise ValueError(f"block_time must be > 0, got {value}")
        if math.isinf(self._block_time):
            self._last_block_at = _now()  # the first block comes one block_time from now
        self._block_time = value
        self._poke()

    @property
    def halted(self) -> bool:
        return self._plan is not None and self._height >= self._plan.height

    def schedule_plan(self, name: str, height: int, info: str = "") -> None:
        """`ScheduleUpgrade`: overwrite the plan; refuse a past height or an applied name."""
        if not name:
            raise ValueError("plan name cannot be empty")
        if height <= self._height:
            raise ValueError(
                f"upgrade cannot be scheduled in the past: height {height} <= {self._height}"
            )
        if name in self.applied:
            raise ValueError(f"upgrade with name {name} has already been completed")
        self.plan = Plan(name=name, height=height, info=info)

    def cancel_plan(self) -> None:
        self.plan = None

    def apply_plan(self) -> None:
        """The new binary runs block H: record name -> H, clear the plan, commit H, resume."""
        plan = self._plan
        if plan is None:
            raise ValueError("no upgrade plan to apply")
        if self._height < plan.height:
            raise ValueError(
                f'BINARY UPDATED BEFORE TRIGGER! UPGRADE "{plan.name}" - in binary but not '
                f"executed on chain (height {self._height} < {plan.height})"
            )
        self.applied[plan.name] = plan.height
        self._plan = None
        self.app_height = self._height
        self._last_block_at = _now()
        self._poke()

    def advance(self, n: int = 1) -> None:
        """Produce up to `n` blocks now; production stops at the plan's halt height."""
        for _ in range(n):
            if self.halted:
                break
            self._produce_block()

    def _produce_block(self) -> None:
        now = _now()
        self._height += 1
        self.app_height = self._height - 1 if self.halted else self._height
        self.height_reached_at.setdefault(self._height, now)
        self._block_time_str = self._timestamp(now)
        self._last_block_at = now
        self._poke()

    async def wait_until(self, predicate: Callable[[ChainSim], bool]) -> None:
        """Return once `predicate(self)` holds; re-checked on every block and plan change.

        For tests on a real clock: `await sim.wait_until(lambda s: s.halted)` instead of a
        sleep loop. Direct writes to `app_height` or `applied` do not wake it.
        """
        while not predicate(self):
            await self._changed.wait()

    def _timestamp(self, now: float) -> str:
        return _format_time(self._wall_epoch + now - self._trio_epoch)

    def _poke(self) -> None:
        """Wake the block producer: the plan, height or block time changed."""
        self._changed.set()
        self._changed = trio.Event()

    async def _produce_blocks(self) -> None:
        while True:
            changed = self._changed
            if self.halted or math.isinf(self._block_time):
                await changed.wait()
                continue
            deadline = self._last_block_at + self._block_time
            if trio.current_time() >= deadline:
                self._produce_block()
                await trio.lowlevel.checkpoint()
                continue
            with trio.move_on_at(deadline):
                await changed.wait()

    # --- proposals -----------------------------------------------------------------------

    def add_proposal(
        self,
        id: int,
        status: ProposalStatus,
        plan: Plan | None,
        *,
        encoding: str = "v1",
    ) -> None:
        """Add or replace proposal `id`.

        encoding: "v1" (MsgSoftwareUpgrade), "v1-legacy" (MsgExecLegacyContent wrapping a
        SoftwareUpgradeProposal), "text" (`messages: []`), "v1-cancel" (MsgCancelUpgrade) or
        "v1-legacy-cancel" (wrapped CancelSoftwareUpgradeProposal). Stored in v1 form; the
        v1beta1 route converts. When the sim serves verbatim v1beta1 items (an SDK v0.45
        chain), the proposal is also added there with its legacy `content`.
        """
        self._v1[id] = lcd.make_v1_proposal(id, status, plan, encoding)
        if self._v1beta1 is not None:
            self._v1beta1[id] = lcd.make_v1beta1_proposal(id, status, plan, encoding)
        self._answer_cache.clear()

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

    # --- serving -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve and produce blocks until cancelled; `task_status.started(url)`."""
        now = trio.current_time()
        self._wall_epoch, self._trio_epoch = time.time(), now
        self._last_block_at = now
        self.height_reached_at.setdefault(self._height, now)
        self._block_time_str = self._timestamp(now)
        async with trio.open_nursery() as nursery:
            serve = functools.partial(
                trio.serve_tcp, self._serve_connection, self._port, host=self._host
            )
            listeners = await nursery.start(serve)
            port = listeners[0].socket.getsockname()[1]
            self.url = f"http://{self._host}:{port}"
            nursery.start_soon(self._produce_blocks)
            task_status.started(self.url)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        await _serve_connection(stream, self._handle)

    async def _handle(self, request: Request, exchange: Exchange) -> None:
        path, _, query = request.target.partition("?")
        route, plan_name = _route_of(path)
        stats = self.stats[route]
        stats.requests += 1
        exchange.stats = stats
        fault = self._draw_fault(route)
        if fault is Fault.RESET:
            await exchange.reset()
        elif fault is Fault.HANG:
            await exchange.hang()
        elif fault is Fault.GARBAGE:
            await exchange.send(200, [("Content-Type", "text/html")], _GARBAGE_BODY)
        elif fault is Fault.HTTP_500:
            err = lcd.LcdError(500, 13, "internal error", via_grpc=True)
            await self._send(exchange, lcd.error_answer(err))
        elif fault is Fault.HTTP_503:
            err = lcd.LcdError(503, 14, "unavailable", via_grpc=True)
            await self._send(exchange, lcd.error_answer(err))
        else:
            answer = self._answer(request.method, route, plan_name, query)
            if fault is Fault.TRUNCATED:
                await exchange.send_truncated(answer.status, self._headers(answer), answer.body)
            elif fault is Fault.TRICKLE:
                await exchange.send_trickle(
                    answer.status, self._headers(answer), answer.body, _TRICKLE_INTERVAL
                )
            else:
                await self._send(exchange, answer)

    async def _send(self, exchange: Exchange, answer: lcd.Answer) -> None:
        await exchange.send(answer.status, self._headers(answer), answer.body)

    def _headers(self, answer: lcd.Answer) -> list[Header]:
        headers: list[Header] = [("Content-Type", answer.content_type)]
        if answer.via_grpc:
            headers.append(("Grpc-Metadata-Content-Type", "application/grpc"))
            if self.height_header is not None:
                headers.append((self.height_header, str(self.app_height)))
        return headers

    def _answer(self, method: str, route: str, plan_name: str | None, query: str) -> lcd.Answer:
        if method != "GET" or route == UNKNOWN:
            return lcd.not_implemented()
        if route == CURRENT_PLAN:
            return lcd.Answer(200, lcd.current_plan_body(self._plan))
        if route == APPLIED_PLAN:
            assert plan_name is not None
            return lcd.Answer(200, lcd.applied_plan_body(self.applied.get(plan_name, 0)))
        if route == BLOCKS_LATEST:
            return lcd.Answer(200, self._blocks_latest())
        if route == SYNCING:
            return lcd.Answer(200, lcd.encode_json({"syncing": self.syncing}))
        if route == GOV_V1_PROPOSALS and not self.gov_v1:
            return lcd.not_implemented()
        cache_key = (route, query, self.filtered_pagination_bug)
        cached = self._answer_cache.get(cache_key)
        if cached is None:
            try:
                cached = lcd.Answer(200, self._proposals(route, query))
            except lcd.LcdError as err:
                cached = lcd.error_answer(err)
            if len(self._answer_cache) >= _ANSWER_CACHE_SIZE:
                self._answer_cache.clear()
            self._answer_cache[cache_key] = cached
        return cached

    def _blocks_latest(self) -> bytes:
        key = (self._height, self._block_time_str)
        if self._block_cache is None or self._block_cache[:2] != key:
            body = lcd.blocks_latest_body(self._height, self._block_time_str)
            self._block_cache = (*key, body)
        return self._block_cache[2]

    def _proposals(self, route: str, query: str) -> bytes:
        parsed = lcd.parse_proposals_query(query)
        match = lcd.status_filter(parsed.status)
        if route == GOV_V1BETA1_PROPOSALS and self._v1beta1 is not None:
            source = self._v1beta1
        else:
            source = self._v1
        entries = [(lcd.store_key(i), source[i]) for i in sorted(source)]
        page = lcd.paginate(entries, parsed.page, match, sdk050_bug=self.filtered_pagination_bug)
        items: Iterable[dict[str, Any]] = page.items
        if route == GOV_V1BETA1_PROPOSALS and self._v1beta1 is None:
            items = [lcd.v1_to_v1beta1(item) for item in page.items]
        return lcd.proposals_body(items, page)


def load_cosmoshub_proposals(fixtures_dir: Path) -> list[dict[str, Any]]:
    """The 218 real Cosmos Hub proposals of the three captured pages, in id order."""
    proposals: list[dict[str, Any]] = []
    for page in (1, 2, 3):
        path = fixtures_dir / f"gov_v1_proposals_cosmoshub_page{page}_of3.json"
        proposals.extend(json.loads(path.read_text())["proposals"])
    return sorted(proposals, key=lambda item: int(item["id"]))


def _parse_plan(text: str) -> tuple[str, int]:
    name, sep, height = text.rpartition("@")
    if not sep or not name or not height.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME@HEIGHT, got {text!r}")
    return name, int(height)


def main(argv: list[str] | None = None) -> None:
    """Run a sim for manual poking: `python -m gopher_updater.testing.chainsim --help`."""
    parser = argparse.ArgumentParser(prog="python -m gopher_updater.testing.chainsim")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1317)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--block-time", type=float, default=1.0)
    parser.add_argument("--plan", type=_parse_plan, metavar="NAME@HEIGHT")
    parser.add_argument("--proposals", type=Path, metavar="DIR", help="dir of the captures")
    parser.add_argument("--no-gov-v1", action="store_true", help="answer 501 on gov v1")
    args = parser.parse_args(argv)
    proposals = load_cosmoshub_proposals(args.proposals) if args.proposals else None
    sim = ChainSim(
        height=args.height,
        block_time=args.block_time,
        proposals=proposals,
        gov_v1=not args.no_gov_v1,
        host=args.host,
        port=args.port,
    )
    if args.plan is not None:
        sim.schedule_plan(*args.plan)

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(sim.run)
            print(f"chain simulator on {url} (height {sim.height}, plan {sim.plan})", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve)


if __name__ == "__main__":
    main()

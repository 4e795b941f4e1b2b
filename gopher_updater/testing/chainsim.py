"""A Cosmos SDK chain simulator served by LCD nodes over real HTTP on loopback.

It reproduces what the daemon must get right (reference: cosmos-lcd.md):
- x/upgrade: one plan at a time, overwritten by a re-schedule, cleared by a cancel or by the
  new binary, which records `applied_plan/{name}` = H;
- the halt: the block store reaches H and stops while the app stays at H-1 (the height
  header), the LCD keeps answering and `current_plan` still shows the plan; then the restart
  on the new binary (`apply_plan()`, or by itself `upgrade_after` seconds after the halt;
  None = never, for stuck-chain tests): applied = H, no plan, blocks resume above H;
- blocks at a configurable block time (1 s by default; 6 s like most mainnets) with an
  optional seeded jitter;
- gov v1 / v1beta1 listings with the SDK's real pagination (and the v0.50 filter bug), the
  v1 -> v1beta1 conversion and its whole-page failure, 501 for routes a chain lacks;
- several LCD nodes of the same chain (`add_endpoint`), each its own HTTP server with its
  own lag, faults, down time and request statistics (`chainsim_endpoint`).

The sim's own attributes `url`, `stats`, `set_fault`, ... are those of its first node
(`primary`). State lives on the object and is read and written from the test's trio thread;
block production runs on trio's clock so it also works under `MockClock`.

Usage: `url = await nursery.start(sim.run)`; or `python -m gopher_updater.testing.chainsim`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from gopher_updater.model import Plan, ProposalStatus
from gopher_updater.testing import chainsim_lcd as lcd
from gopher_updater.testing.chainsim_endpoint import (
    GOV_V1_PROPOSALS,
    GOV_V1BETA1_PROPOSALS,
    ROUTES,
    Fault,
    LcdEndpoint,
)
from gopher_updater.testing.chainsim_http import RouteStats

__all__ = [
    "ROUTES",
    "ChainSim",
    "ChainView",
    "Fault",
    "LcdEndpoint",
    "RouteStats",
    "load_cosmoshub_proposals",
]

_ANSWER_CACHE_SIZE = 256
_BLOCK_CACHE_SIZE = 8
_HISTORY = 4096  # chain states remembered for lagging nodes


@attrs.frozen
class ChainView:
    """The chain as one node shows it: block-store height, app height, plan, block time."""

    height: int
    app_height: int
    plan: Plan | None
    time: str
    at: float  # trio time at which the chain was in this state
    lagging: bool = False


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
    """One simulated chain and its first LCD node. See the module docstring."""

    def __init__(
        self,
        *,
        height: int = 1000,
        block_time: float = 1.0,
        block_jitter: float = 0.0,
        upgrade_after: float | None = None,
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
        if not 0.0 <= block_jitter < 1.0:
            raise ValueError(f"block_jitter must be within [0, 1), got {block_jitter}")
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
        self._history: collections.deque[ChainView] = collections.deque(maxlen=_HISTORY)
        self._rng = random.Random(seed)
        self.block_jitter = block_jitter
        self._interval_factor = 1.0
        self._block_time = math.inf
        self.block_time = block_time
        self._upgrade_after = upgrade_after
        self.height_reached_at: dict[int, float] = {}
        self.syncing = False
        self.gov_v1 = gov_v1
        self.filtered_pagination_bug = filtered_pagination_bug
        self._v1: dict[int, dict[str, Any]] = {}
        self._v1beta1: dict[int, dict[str, Any]] | None = None
        for item in proposals or ():
            self._v1[int(item["id"])] = item
        if proposals_v1beta1 is not None:
            self._v1beta1 = {int(item["proposal_id"]): item for item in proposals_v1beta1}
        self._answer_cache: dict[tuple[str, str, bool], lcd.Answer] = {}
        self._block_cache: dict[tuple[int, str], bytes] = {}
        self._nursery: trio.Nursery | None = None
        #: The LCD nodes serving this chain; the first is the sim's own (`url`, `stats`...).
        self.endpoints: list[LcdEndpoint] = []
        self.primary = LcdEndpoint(
            self, height_header=height_header, seed=seed, host=host, port=port
        )
        self.endpoints.append(self.primary)

    # --- the first node (the sim's API before it had several) ----------------------------

    @property
    def url(self) -> str:
        return self.primary.url

    @property
    def stats(self) -> dict[str, RouteStats]:
        return self.primary.stats

    @property
    def connections(self) -> int:
        return self.primary.connections

    @property
    def height_header(self) -> str | None:
        return self.primary.height_header

    @height_header.setter
    def height_header(self, value: str | None) -> None:
        self.primary.height_header = value

    def set_fault(
        self, route: str, fault: Fault | None, *, rate: float = 1.0, count: int | None = None
    ) -> None:
        """`LcdEndpoint.set_fault` on the first node."""
        self.primary.set_fault(route, fault, rate=rate, count=count)

    def stats_total(self) -> RouteStats:
        return self.primary.stats_total()

    def reset_stats(self) -> None:
        self.primary.reset_stats()

    async def add_endpoint(
        self,
        *,
        lag: int = 0,
        delay: float = 0.0,
        height_header: str | None = "Grpc-Metadata-X-Cosmos-Block-Height",
        seed: int = 0,
        port: int = 0,
    ) -> LcdEndpoint:
        """Another node of this chain on its own port (see `LcdEndpoint`); needs `run`."""
        if self._nursery is None:
            raise RuntimeError("start the sim first: await nursery.start(sim.run)")
        endpoint = LcdEndpoint(
            self,
            lag=lag,
            delay=delay,
            height_header=height_header,
            seed=seed,
            host=self.primary.host,
            port=port,
        )
        await self._nursery.start(endpoint.run)
        self.endpoints.append(endpoint)
        return endpoint

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
    def upgrade_after(self) -> float | None:
        """Seconds from the halt to the new binary applying the plan; None = never."""
        return self._upgrade_after

    @upgrade_after.setter
    def upgrade_after(self, value: float | None) -> None:
        if value is not None and not value >= 0:
            raise ValueError(f"upgrade_after must be >= 0 or None, got {value}")
        self._upgrade_after = value
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
        if self.block_jitter:
            self._interval_factor = 1 + self._rng.uniform(-self.block_jitter, self.block_jitter)
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
        """Record the new state for lagging nodes and wake whoever waits for a change."""
        self._record()
        self._changed.set()
        self._changed = trio.Event()

    def _record(self) -> None:
        view = ChainView(
            self._height, self.app_height, self._plan, self._block_time_str, _now(), True
        )
        last = self._history[-1] if self._history else None
        if last is not None and (last.at, last.height) == (view.at, view.height):
            self._history.pop()  # several changes at one height and instant: the last stands
        self._history.append(view)

    def view(self, *, lag: int = 0, delay: float = 0.0) -> ChainView:
        """The chain as a node `lag` blocks and `delay` seconds behind shows it."""
        if lag == 0 and delay == 0:
            return ChainView(
                self._height, self.app_height, self._plan, self._block_time_str, _now()
            )
        top, cutoff = self._height - lag, _now() - delay
        for state in reversed(self._history):
            if state.height <= top and state.at <= cutoff:
                return state
        return self._history[0]  # further back than remembered: the oldest state known

    def applied_in(self, view: ChainView, name: str) -> int:
        """`applied_plan/{name}` as a node at `view` answers it (0 before it applied it)."""
        height = self.applied.get(name, 0)
        return 0 if view.lagging and height > view.app_height else height

    async def _produce_blocks(self) -> None:
        while True:
            changed = self._changed
            if self.halted or math.isinf(self._block_time):
                await changed.wait()
                continue
            deadline = self._last_block_at + self._block_time * self._interval_factor
            if trio.current_time() >= deadline:
                self._produce_block()
                await trio.lowlevel.checkpoint()
                continue
            with trio.move_on_at(deadline):
                await changed.wait()

    async def _upgrade_when_halted(self) -> None:
        """The new binary restarts `upgrade_after` s after the halt and applies the plan."""
        while True:
            await self.wait_until(lambda s: s.halted and s.upgrade_after is not None)
            await self._upgrade_later(self._plan, self._upgrade_after)

    async def _upgrade_later(self, plan: Plan | None, after: float | None) -> None:
        assert after is not None
        with trio.move_on_after(after) as timer:
            await self.wait_until(
                lambda s: s.plan != plan or not s.halted or s.upgrade_after != after
            )
        if timer.cancelled_caught:
            self.apply_plan()

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

    def proposals_answer(self, v1beta1: bool, query: str) -> lcd.Answer:
        """One page of a gov listing (cached: listings are asked again and again)."""
        route = GOV_V1BETA1_PROPOSALS if v1beta1 else GOV_V1_PROPOSALS
        cache_key = (route, query, self.filtered_pagination_bug)
        cached = self._answer_cache.get(cache_key)
        if cached is None:
            try:
                cached = lcd.Answer(200, self._proposals(v1beta1, query))
            except lcd.LcdError as err:
                cached = lcd.error_answer(err)
            if len(self._answer_cache) >= _ANSWER_CACHE_SIZE:
                self._answer_cache.clear()
            self._answer_cache[cache_key] = cached
        return cached

    def _proposals(self, v1beta1: bool, query: str) -> bytes:
        parsed = lcd.parse_proposals_query(query)
        match = lcd.status_filter(parsed.status)
        source = self._v1beta1 if v1beta1 and self._v1beta1 is not None else self._v1
        entries = [(lcd.store_key(i), source[i]) for i in sorted(source)]
        page = lcd.paginate(entries, parsed.page, match, sdk050_bug=self.filtered_pagination_bug)
        items = page.items
        if v1beta1 and self._v1beta1 is None:
            items = [lcd.v1_to_v1beta1(item) for item in page.items]
        return lcd.proposals_body(items, page)

    def block_body(self, view: ChainView) -> bytes:
        key = (view.height, view.time)
        body = self._block_cache.get(key)
        if body is None:
            if len(self._block_cache) >= _BLOCK_CACHE_SIZE:
                self._block_cache.clear()
            body = self._block_cache[key] = lcd.blocks_latest_body(view.height, view.time)
        return body

    # --- serving -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Produce blocks and serve the first node until cancelled; `started(url)`."""
        now = trio.current_time()
        self._wall_epoch, self._trio_epoch = time.time(), now
        self._last_block_at = now
        self.height_reached_at.setdefault(self._height, now)
        self._block_time_str = self._timestamp(now)
        self._history.clear()
        self._record()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.primary.run)
            nursery.start_soon(self._produce_blocks)
            nursery.start_soon(self._upgrade_when_halted)
            self._nursery = nursery
            task_status.started(self.url)


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

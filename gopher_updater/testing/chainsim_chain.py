"""The simulated chain itself: heights, the upgrade plan, the halt and the restart.

Why apart from the nodes that serve it (`chainsim_endpoint`) and from `ChainSim`, which
puts both together: this is the state machine every test leans on (x/upgrade's rules, the
halt at H with the app at H-1, the new binary applying the plan and blocks resuming), and
it reads best without sockets in the way. It also remembers its recent states, so a node
that lags (in blocks or in seconds) can show the chain as it was.

State is read and written from the test's trio thread; block production runs on trio's
clock, so it also works under `MockClock`.
"""

from __future__ import annotations

import collections
import datetime
import math
import random
import time
from collections.abc import Callable
from typing import Self

import attrs
import trio

from gopher_updater.model import Plan

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


class Chain:
    """One chain: see the module docstring. `ChainSim` adds the nodes and governance."""

    def __init__(
        self,
        *,
        height: int = 1000,
        block_time: float = 1.0,
        block_jitter: float = 0.0,
        upgrade_after: float | None = None,
        seed: int = 0,
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

    async def wait_until(self, predicate: Callable[[Self], bool]) -> None:
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

    def _start_clock(self, now: float) -> None:
        """Block production starts now: the first block comes one block time later."""
        self._wall_epoch, self._trio_epoch = time.time(), now
        self._last_block_at = now
        self.height_reached_at.setdefault(self._height, now)
        self._block_time_str = self._timestamp(now)
        self._history.clear()
        self._record()

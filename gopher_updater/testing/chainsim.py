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

Usage: `url = await nursery.start(sim.run)`; or `python -m gopher_updater.testing.chainsim`
(see `chainsim_cli`).
"""

from __future__ import annotations

from typing import Any

import trio

from gopher_updater.model import Plan, ProposalStatus
from gopher_updater.testing import chainsim_lcd as lcd
from gopher_updater.testing.chainsim_chain import Chain, ChainView
from gopher_updater.testing.chainsim_endpoint import ROUTES, Fault, LcdEndpoint
from gopher_updater.testing.chainsim_http import RouteStats
from gopher_updater.testing.chainsim_proposals import ProposalStore, load_cosmoshub_proposals

__all__ = [
    "ROUTES",
    "ChainSim",
    "ChainView",
    "Fault",
    "LcdEndpoint",
    "RouteStats",
    "load_cosmoshub_proposals",
]

_BLOCK_CACHE_SIZE = 8


class ChainSim(Chain):
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
        super().__init__(
            height=height,
            block_time=block_time,
            block_jitter=block_jitter,
            upgrade_after=upgrade_after,
            seed=seed,
        )
        self.syncing = False
        self.gov_v1 = gov_v1
        #: The chain's gov proposals and the listings served from them.
        self.gov = ProposalStore(
            proposals, proposals_v1beta1, filtered_pagination_bug=filtered_pagination_bug
        )
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
        ahead: int = 0,
    ) -> LcdEndpoint:
        """Another node of this chain on its own port (see `LcdEndpoint`); needs `run`.

        `ahead` > 0 makes it a lying node, showing the chain that many blocks further."""
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
        endpoint.ahead = ahead
        await self._nursery.start(endpoint.run)
        self.endpoints.append(endpoint)
        return endpoint

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
        self.gov.add(id, status, plan, encoding)

    @property
    def filtered_pagination_bug(self) -> bool:
        """Serve listings with SDK v0.50's filtered-pagination bug."""
        return self.gov.filtered_pagination_bug

    @filtered_pagination_bug.setter
    def filtered_pagination_bug(self, value: bool) -> None:
        self.gov.filtered_pagination_bug = value

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
        self._start_clock(trio.current_time())
        async with trio.open_nursery() as nursery:
            await nursery.start(self.primary.run)
            nursery.start_soon(self._produce_blocks)
            nursery.start_soon(self._upgrade_when_halted)
            self._nursery = nursery
            task_status.started(self.url)


if __name__ == "__main__":
    from gopher_updater.testing.chainsim_cli import main

    main()

"""pytest fixtures for the chain simulator.

`chain` is the common case: a running LCD at height 1000 that never produces a block on its
own (`block_time=math.inf`; tests call `advance()`), holding the 218 real Cosmos Hub
proposals. Tests that need other settings start their own sim:
`url = await nursery.start(ChainSim(...).run)`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from gopher_updater.testing.chainsim import ChainSim, load_cosmoshub_proposals

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "cosmos"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures/cosmos: the real LCD captures."""
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def cosmoshub_proposals(fixtures_dir: Path) -> list[dict[str, Any]]:
    """The 218 real Cosmos Hub gov v1 proposals, in id order. Shared: do not mutate."""
    return load_cosmoshub_proposals(fixtures_dir)


@pytest.fixture
async def chain(
    nursery: trio.Nursery, cosmoshub_proposals: list[dict[str, Any]]
) -> AsyncIterator[ChainSim]:
    """A running ChainSim(height=1000, block_time=inf) with the Cosmos Hub proposals."""
    sim = ChainSim(height=1000, block_time=math.inf, proposals=cosmoshub_proposals)
    await nursery.start(sim.run)
    yield sim

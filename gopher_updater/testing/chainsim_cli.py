"""`python -m gopher_updater.testing.chainsim`: a simulated chain to poke at by hand."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import trio

from gopher_updater.testing.chainsim import ChainSim
from gopher_updater.testing.chainsim_proposals import load_cosmoshub_proposals


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

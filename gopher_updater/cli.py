"""Command line: `gopher-updater [run|check|demo]`, configured by environment variables only.

Configuration errors exit with status 2 and one message listing every bad variable — never
a traceback — because the operator reading it is looking at `kubectl logs`, not a debugger.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gopher_updater import __version__, config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gopher-updater",
        description=(
            "Watch a Cosmos SDK chain and, when it halts for the approved upgrade, retag "
            "SOURCE_PREFIX<plan> to TARGET_PREFIX<plan> in the registry so Flux rolls the nodes."
        ),
        epilog=config.help_text()
        + "\n\nDurations use Go syntax (300ms, 1m30s, 1.5h). Booleans: true/false/1/0/yes/no.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gopher-updater {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{run,check,demo}")
    sub.add_parser("run", help="run the daemon (default)")
    sub.add_parser("check", help="one-shot preflight: chain, registry credentials, source tag")
    demo = sub.add_parser("demo", help="run the whole job locally against a simulator")
    demo.add_argument("--blocks-ahead", type=int, default=6, help="plan height above start")
    demo.add_argument("--block-time", type=float, default=1.0, help="simulated block time (s)")
    return parser


def _load_or_exit() -> config.Config:
    try:
        return config.load()
    except config.ConfigError as exc:
        print(f"gopher-updater: {exc}", file=sys.stderr)
        print("run `gopher-updater --help` for every variable and its form", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "run"
    if command == "demo":
        from gopher_updater.demo import main as demo_main

        return demo_main(blocks_ahead=args.blocks_ahead, block_time=args.block_time)
    cfg = _load_or_exit()
    if command == "check":
        from gopher_updater.check import main as check_main

        return check_main(cfg)
    from gopher_updater.daemon import main as daemon_main

    return daemon_main(cfg)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Command line: `gopher-updater [run|check|demo|healthcheck]`, configured by environment only.

Configuration errors exit with status 2 and one message listing every bad variable — never
a traceback — because the operator reading it is looking at `kubectl logs`, not a debugger.
"""

from __future__ import annotations

import argparse
import http.client
import os
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
    sub = parser.add_subparsers(dest="command", metavar="{run,check,demo,healthcheck}")
    sub.add_parser("run", help="run the daemon (default)")
    sub.add_parser("check", help="one-shot preflight: chain, registry credentials, source tag")
    demo = sub.add_parser("demo", help="run the whole job locally against a simulator")
    demo.add_argument("--blocks-ahead", type=int, default=6, help="plan height above start")
    demo.add_argument("--block-time", type=float, default=1.0, help="simulated block time (s)")
    sub.add_parser("healthcheck", help="exit 0 if this host's daemon answers /healthz")
    return parser


#: The demo needs the test rig, which the container image leaves out on purpose.
DEMO_MISSING = (
    "gopher-updater: the demo needs the test rig (gopher_updater.testing), which this "
    "installation does not include (the container image leaves it out); run it from a "
    "source checkout: `just demo`"
)


def probe_host(bind_host: str) -> str:
    """Where a local probe reaches a daemon bound to `bind_host` (a wildcard is not an address)."""
    if bind_host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if bind_host in ("::", "[::]"):
        return "::1"
    return bind_host.strip("[]")


def healthcheck(env: dict[str, str] | None = None) -> int:
    """Docker's HEALTHCHECK: GET /healthz where HTTP_HOST/HTTP_PORT say the daemon listens.

    Only those two variables are read (with the daemon's own parsers and defaults), so the
    probe works whatever else the environment holds, and a wildcard bind is probed on loopback.
    """
    env = dict(os.environ) if env is None else env
    values = {}
    for var in config.VARS:
        if var.name in ("HTTP_HOST", "HTTP_PORT"):
            raw = (env.get(var.name) or "").strip() or str(var.default)
            try:
                values[var.name] = var.parse(raw)
            except ValueError as exc:
                print(f"healthcheck: {var.name}: {exc}", file=sys.stderr)
                return 1
    host, port = probe_host(values["HTTP_HOST"]), values["HTTP_PORT"]
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        print(f"healthcheck: {host}:{port}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    return 0 if status == 200 else 1


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
    if command == "healthcheck":
        return healthcheck()
    if command == "demo":
        try:
            from gopher_updater.demo import main as demo_main
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("gopher_updater.testing"):
                raise
            print(DEMO_MISSING, file=sys.stderr)
            return 1

        return demo_main(blocks_ahead=args.blocks_ahead, block_time=args.block_time)
    cfg = _load_or_exit()
    if command == "check":
        from gopher_updater.check import main as check_main

        return check_main(cfg)
    from gopher_updater.daemon import main as daemon_main

    return daemon_main(cfg)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

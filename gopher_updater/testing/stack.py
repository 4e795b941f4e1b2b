"""The whole stack on loopback: chain simulator + real registry + the daemon.

Shared by the end-to-end tests, `gopher-updater demo` and the benchmark, so all three exercise
the daemon the same way an operator runs it: real HTTP to the LCD, real HTTP to a real
registry, the real configuration loader.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import attrs
import httpx
import trio

from gopher_updater import config, daemon
from gopher_updater.testing.registry import RunningRegistry


def daemon_env(
    rpc_url: str, registry: RunningRegistry, repo: str, **overrides: str
) -> dict[str, str]:
    """The environment an operator would set, pointed at the simulator and the registry."""
    env = {
        "RPC_URL": rpc_url,
        "REGISTRY_URL": registry.url,
        "DOCKERHUB_USER": registry.user,
        "DOCKERHUB_PASSWORD": registry.password,
        "REPO_PATH": repo,
        "SOURCE_PREFIX": "release-",
        "TARGET_PREFIX": "mainnet-",
        "POLL_INTERVAL": "1m",
        "REQUEST_TIMEOUT": "2s",
        "HTTP_HOST": "127.0.0.1",
        "LOG_LEVEL": "info",
    }
    env.update(overrides)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.define
class InProcessDaemon:
    url: str
    cancel_scope: trio.CancelScope
    cfg: config.Config

    def stop(self) -> None:
        self.cancel_scope.cancel()


async def start_daemon(nursery: trio.Nursery, env: Mapping[str, str]) -> InProcessDaemon:
    """Run `daemon.run` in `nursery` (ops app on a free port); return its URL and a stopper."""
    cfg = attrs.evolve(config.load(env), http_port=0)
    scope = trio.CancelScope()

    async def runner(task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await daemon.run(cfg, handle_signals=False, task_status=task_status)

    urls: list[str] = await nursery.start(runner)
    return InProcessDaemon(url=urls[0], cancel_scope=scope, cfg=cfg)


def spawn_daemon(
    env: Mapping[str, str], *args: str, port: int | None = None, log: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `python -m gopher_updater` as a real process; returns it and its ops URL.

    Its output goes to pipes, or appended to `log` (both streams) for a long or chatty run
    (`LOG_LEVEL=debug`), whose pipes nobody reads until the end would fill and block it.
    """
    port = port or free_port()
    full = {k: v for k, v in os.environ.items() if k not in config.ENV_VARS}
    full.update(env)
    full["HTTP_PORT"] = str(port)
    out: int | IO[bytes] = subprocess.PIPE
    if log is not None:
        out = log.open("ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gopher_updater", *args],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT if log is not None else subprocess.PIPE,
        )
    finally:
        if not isinstance(out, int):
            out.close()  # the child has its own copy
    return proc, f"http://{env.get('HTTP_HOST', '127.0.0.1')}:{port}"


def wait_http(url: str, *, timeout: float = 10.0, status: int | None = None) -> float:
    """Block until `url` answers (with `status`, if given); returns seconds waited."""
    start = time.monotonic()
    while True:
        try:
            response = httpx.get(url, timeout=1.0)
            if status is None or response.status_code == status:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{url} did not answer within {timeout}s")
        time.sleep(0.02)

"""The ops app: health, readiness, metrics, status and pprof, served by Hypercorn's trio worker.

Every handler reads cached state (`State`, `Metrics`); none causes a chain or registry
request, so a burst of probes costs the outside world nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import hypercorn.config
import hypercorn.trio
import trio
from prometheus_client import CONTENT_TYPE_LATEST
from quart import Response
from quart_trio import QuartTrio

from gopher_updater.metrics import Metrics
from gopher_updater.state import State

E = TypeVar("E", bound=BaseException)
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def create_app(state: State, metrics: Metrics, *, pprof_enabled: bool) -> QuartTrio:
    app = QuartTrio("gopher_updater")
    app.config["JSON_SORT_KEYS"] = False

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> tuple[dict[str, Any], int]:
        ready, body = state.readiness(trio.current_time())
        return body, 200 if ready else 503

    @app.get("/metrics")
    async def metrics_page() -> Response:
        return Response(metrics.render(), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return state.status()

    if pprof_enabled:
        from gopher_updater.pprof import pprof

        app.register_blueprint(pprof)
    return app


def shield_send(app: ASGIApp) -> ASGIApp:
    """Run every ASGI `send` shielded from cancellation.

    quart-trio cancels the task that calls `send()` when a request ends, but Hypercorn does its
    connection bookkeeping inside `send()`. Cancelled there, a keep-alive connection (e.g. a
    Prometheus scraper's) never learns the response finished: `Connection: close` is ignored,
    keep-alive never times out, and graceful shutdown waits its full timeout.
    """

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def shielded(message: dict[str, Any]) -> None:
            with trio.CancelScope(shield=True):
                await send(message)

        await app(scope, receive, shielded)

    return wrapped


class ListenError(Exception):
    """The ops endpoints could not bind: an operator error (port taken, address not local).

    Raised instead of the OSError Hypercorn lets escape (nested in exception groups), so the
    daemon can print one line naming the address rather than a crash dump.
    """

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host, self.port, self.reason = host, port, reason
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(f"cannot listen on {address}: {reason}")


def find_error(exc: BaseException, kind: type[E]) -> E | None:
    """The first `kind` in `exc` or, depth first, in the exception groups around it."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_error(inner, kind)
            if found is not None:
                return found
    return None


class _Started:
    """A task_status that remembers whether started() was called (bind done)."""

    def __init__(self, status: trio.TaskStatus[list[str]]) -> None:
        self.status = status
        self.called = False

    def started(self, value: Any = None) -> None:
        self.called = True
        self.status.started(value)


async def serve(
    app: QuartTrio,
    host: str,
    port: int,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until `shutdown` is set; started() with the bound URLs (port 0 resolves).

    A failure before started() (the bind) raises `ListenError`.
    """
    config = hypercorn.config.Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 5.0
    config.accesslog = None
    # A logger, not "-": Hypercorn then adds no handler of its own and its records come out
    # through ours, in the daemon's log format.
    config.errorlog = logging.getLogger("hypercorn.error")
    status = _Started(task_status)
    try:
        await hypercorn.trio.serve(
            shield_send(app),  # type: ignore[arg-type]
            config,
            shutdown_trigger=shutdown.wait,
            task_status=status,
            mode="asgi",
        )
    except Exception as exc:
        error = None if status.called else find_error(exc, OSError)
        if error is None:
            raise
        reason = (error.strerror or str(error) or type(error).__name__).lower()
        raise ListenError(host, port, reason) from None

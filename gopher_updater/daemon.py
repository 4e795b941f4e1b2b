"""Wiring: one trio nursery supervising the whole daemon.

    trio.run(run)
    └── root nursery
        ├── ops app (Quart-Trio on Hypercorn's trio worker; graceful on `shutdown`)
        └── task nursery (any crash ends them all; the daemon exits non-zero)
            ├── signal watcher      SIGTERM/SIGINT -> cancel the task nursery
            ├── chain poller        current_plan (+ blocks/latest near H) -> rule -> jobs
            ├── governance reader   upgrade proposals at start-up, then every 10 polls
            ├── retag worker        RetagJob channel (bounded, deduplicated) -> registry
            └── registry watch      push credentials + source-tag preflight, periodically

When the task nursery ends (signal or crash), `shutdown` is set so Hypercorn closes its
connections gracefully; the process exits 0 on a signal and 1 on a crash.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio

from gopher_updater import __version__, ops
from gopher_updater.chain import ChainClient
from gopher_updater.config import Config
from gopher_updater.logs import configure, get_logger
from gopher_updater.metrics import Metrics
from gopher_updater.model import RetagJob
from gopher_updater.poller import Poller
from gopher_updater.registry import RegistryClient
from gopher_updater.state import State
from gopher_updater.urls import redact_url
from gopher_updater.worker import JobQueue, Wakeup, run_registry_watch, run_worker

log = get_logger("gopher_updater.daemon")

JOB_QUEUE_SIZE = 16
REGISTRY_DEADLINE_FACTOR = 6  # a retag, retries included, gets 6 x REQUEST_TIMEOUT


def registry_check_interval(poll_interval: float) -> float:
    """Credentials and preflight: every 5 polls, but at least 1 min and at most 15 min apart."""
    return min(max(5 * poll_interval, 60.0), 900.0)


def registry_client(cfg: Config, metrics: Metrics | None = None) -> RegistryClient:
    def on_request(method: str, code: str) -> None:
        if metrics is not None:
            metrics.registry_requests.labels(method=method, code=code).inc()

    return RegistryClient(
        base_url=cfg.registry_url,
        repository=cfg.repo_path,
        user=cfg.dockerhub_user,
        password=cfg.dockerhub_password.reveal(),
        timeout=cfg.request_timeout,
        deadline=REGISTRY_DEADLINE_FACTOR * cfg.request_timeout,
        dry_run=cfg.dry_run,
        overwrite_target=cfg.overwrite_target,
        on_request=on_request,
    )


@asynccontextmanager
async def chain_client(cfg: Config) -> AsyncIterator[ChainClient]:
    """The LCD client; with RPC_URL credentials, every request carries Basic auth.

    The credentials never enter the URL the client (and its errors) see: config split them
    off into `cfg.rpc_auth`, and they travel only in the Authorization header.
    """
    if cfg.rpc_auth is None:
        async with ChainClient(cfg.rpc_url, timeout=cfg.request_timeout) as chain:
            yield chain
        return
    user, password = cfg.rpc_auth
    async with (
        httpx.AsyncClient(
            timeout=httpx.Timeout(cfg.request_timeout),
            auth=httpx.BasicAuth(user, password.reveal()),
        ) as http,
        ChainClient(cfg.rpc_url, timeout=cfg.request_timeout, client=http) as chain,
    ):
        yield chain


async def watch_signals(cancel_scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("shutting down", signal=signal.Signals(signum).name)
            cancel_scope.cancel()
            return


async def run(
    cfg: Config,
    *,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until cancelled or signalled; started() with the ops URLs."""
    state = State(poll_interval=cfg.poll_interval)
    metrics = Metrics()
    send, receive = trio.open_memory_channel[RetagJob](JOB_QUEUE_SIZE)
    queue = JobQueue(send)
    wakeup = Wakeup()
    log.info(
        "starting",
        version=__version__,
        rpc_url=redact_url(cfg.rpc_url, keep_path=True),
        rpc_basic_auth=cfg.rpc_auth is not None,
        registry_url=redact_url(cfg.registry_url, keep_path=True),
        repository=cfg.repo_path,
        source_prefix=cfg.source_prefix,
        target_prefix=cfg.target_prefix,
        poll_interval=cfg.poll_interval,
        dry_run=cfg.dry_run,
        overwrite_target=cfg.overwrite_target,
    )
    async with (
        chain_client(cfg) as chain,
        registry_client(cfg, metrics) as registry,
    ):
        poller = Poller(cfg, chain, state, metrics, queue, wakeup)
        app = ops.create_app(state, metrics, pprof_enabled=cfg.pprof_enabled)
        shutdown = trio.Event()
        async with trio.open_nursery() as root:
            urls = await root.start(ops.serve, app, cfg.http_host, cfg.http_port, shutdown)
            log.info("ops endpoints listening", urls=urls)
            try:
                async with trio.open_nursery() as tasks:
                    if handle_signals:
                        tasks.start_soon(watch_signals, tasks.cancel_scope)
                    tasks.start_soon(poller.run, name="chain poller")
                    tasks.start_soon(poller.run_governance, name="governance reader")
                    tasks.start_soon(
                        run_worker, receive, queue, registry, state, metrics, name="retag worker"
                    )
                    tasks.start_soon(
                        lambda: run_registry_watch(
                            registry,
                            state,
                            metrics,
                            poller.source_tags,
                            interval=registry_check_interval(cfg.poll_interval),
                            wakeup=wakeup,
                        ),
                        name="registry watch",
                    )
                    task_status.started(urls)
            finally:
                shutdown.set()
    log.info("stopped")


def main(cfg: Config) -> int:
    configure(cfg.log_level, cfg.log_format)
    try:
        trio.run(run, cfg)
    except Exception as exc:
        listen = ops.find_error(exc, ops.ListenError)
        if listen is not None:  # an operator error: one line, no exception dump
            log.error(str(listen), host=listen.host, port=listen.port, reason=listen.reason)
            return 1
        log.exception("crashed")
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    finally:
        sys.stdout.flush()
    return 0

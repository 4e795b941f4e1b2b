"""Wiring: one trio nursery supervising the whole daemon.

    trio.run(run)
    └── root nursery
        ├── ops app (Quart-Trio on Hypercorn's trio worker; graceful on `shutdown`)
        │     reads Views.snapshot(): the views the tasks below publish, never a request
        └── notifier nursery
            ├── notifier            Notifier (only with NOTIFY_WEBHOOK_URL / NOTIFY_URLS): one
            │                       task and bounded queue per service; it outlives the task
            │                       nursery by up to NOTIFY_DRAIN seconds (below)
            └── task nursery (any crash ends them all; the daemon exits non-zero)
                ├── signal watcher      SIGTERM/SIGINT -> cancel the task nursery
                ├── chain poller        Poller: every LCD endpoint at once (LcdPool):
                │                       current_plan (+ blocks/latest near H) -> rule ->
                │                       RetagJobs; publishes ChainView (with each
                │                       endpoint's health)
                ├── governance reader   Governance: proposals at start-up, then every 10
                │                       polls; publishes GovernanceView
                ├── retag worker        RetagWorker: RetagJob channel -> registry;
                │                       publishes PromotionsView
                ├── registry watch      RegistryWatch: push credentials + source-tag
                │                       preflight; publishes RegistryView
                ├── upgrade follower    Follower: the timeline from the halt until the chain
                │                       runs again (worker hooks, own LCD reads);
                │                       UpgradeView
                ├── flux nudger         Nudger (only with FLUX_RECEIVER_URL): the follower
                │                       queues a nudge per settled promotion
                └── announcer           Announcer: the tasks above tell it their facts
                                        (never blocking); it sends `scheduled` and the
                                        reminders from the published ChainView

When the task nursery ends (signal or crash), the notifier gets NOTIFY_DRAIN seconds to
deliver what is queued (a SIGTERM right after a promotion must not lose its `promoted`: the
restarted daemon finds `already_promoted` and will not tell it), then `shutdown` is set so
Hypercorn closes its connections gracefully; the process exits 0 on a signal and 1 on a
crash. A cancellation from outside `run` (tests, embedding) stops everything at once.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio

from gopher_updater import __version__, ops, rule_records
from gopher_updater.announce import Announcer
from gopher_updater.chain import ChainClient
from gopher_updater.config import Config
from gopher_updater.flux import Nudger
from gopher_updater.flux_status import FluxMetrics, NudgeSchedule
from gopher_updater.follower import Follower
from gopher_updater.governance import Governance
from gopher_updater.lcd_pool import open_pool
from gopher_updater.logs import configure, get_logger
from gopher_updater.metrics import Metrics
from gopher_updater.model import RetagJob
from gopher_updater.notifier import Notifier, NotifyMetrics, RetryPolicy
from gopher_updater.poller import Poller
from gopher_updater.preflight import RegistryWatch, wanted_tags
from gopher_updater.registry import RegistryClient
from gopher_updater.state import Snapshot, Views, readiness
from gopher_updater.urls import redact_url
from gopher_updater.views import Wakeup
from gopher_updater.worker import JobQueue, RetagWorker

log = get_logger("gopher_updater.daemon")

JOB_QUEUE_SIZE = 16
NOTIFY_DRAIN = 5.0  # seconds queued notifications get to go out at shutdown
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
    auth = None
    if cfg.rpc_auth is not None:
        user, password = cfg.rpc_auth
        auth = httpx.BasicAuth(user, password.reveal())
    async with ChainClient(cfg.rpc_url, timeout=cfg.request_timeout, auth=auth) as chain:
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
    metrics = Metrics()
    tags = rule_records.TagScheme(cfg.source_prefix, cfg.target_prefix)
    send, receive = trio.open_memory_channel[RetagJob](JOB_QUEUE_SIZE)
    queue = JobQueue(send)
    preflight = Wakeup()  # the registry watch's: a new plan or upcoming upgrade to check
    log.info(
        "starting",
        version=__version__,
        rpc_url=redact_url(cfg.rpc_url, keep_path=True),
        rpc_basic_auth=cfg.rpc_auth is not None,
        lcd_endpoints=[e.label for e in cfg.lcd_endpoints],
        rpc_quorum=cfg.rpc_quorum,
        registry_url=redact_url(cfg.registry_url, keep_path=True),
        repository=cfg.repo_path,
        source_prefix=cfg.source_prefix,
        target_prefix=cfg.target_prefix,
        poll_interval=cfg.poll_interval,
        dry_run=cfg.dry_run,
        overwrite_target=cfg.overwrite_target,
    )
    notifier, announcer = _notifications(cfg, tags, metrics)
    async with (
        open_pool(cfg, metrics) as chain,  # every RPC_URL endpoint
        registry_client(cfg, metrics) as registry,
    ):
        governance = Governance(
            chain,
            preflight,
            poll_interval=cfg.poll_interval,
            request_timeout=cfg.request_timeout,
        )
        poller = Poller(
            chain,
            metrics,
            queue,
            tags,
            governance,
            preflight,
            poll_interval=cfg.poll_interval,
            request_timeout=cfg.request_timeout,
            announce=announcer,
        )
        # After the retag: the follower, and the Nudger it feeds
        follower = Follower(
            chain,
            metrics.upgrade,
            stuck_after=cfg.upgrade_stuck_after,
            poll_interval=cfg.poll_interval,
            request_timeout=cfg.request_timeout,
            repository=cfg.repo_path,
            announce=announcer,
        )
        nudger = None
        if cfg.flux_receivers:  # none: no Nudger task at all
            nudger = follower.nudger = Nudger(
                cfg.flux_receivers,
                metrics=FluxMetrics(metrics.registry),
                schedule=NudgeSchedule(request_timeout=cfg.request_timeout),
                dry_run=cfg.dry_run,
                on_accepted=follower.nudge_accepted,  # the timeline's `nudged`
            )
        worker = RetagWorker(registry, metrics, queue, hooks=follower, announce=announcer)
        watch = RegistryWatch(
            registry,
            metrics,
            lambda: wanted_tags(poller.view, governance.view, tags),
            interval=registry_check_interval(cfg.poll_interval),
            wakeup=preflight,
            announce=announcer,
        )
        views = Views(
            chain=poller,
            governance=governance,
            registry=watch,
            promotions=worker,
            upgrade=follower,
            flux=None if nudger is None else nudger.snapshot,
            notifications=None if notifier is None else notifier.status,
        )
        metrics.health.bind(lambda: _health(views.snapshot()))
        app = ops.create_app(views.snapshot, metrics, pprof_enabled=cfg.pprof_enabled)
        shutdown = trio.Event()
        async with trio.open_nursery() as root:
            urls = await root.start(ops.serve, app, cfg.http_host, cfg.http_port, shutdown)
            log.info("ops endpoints listening", urls=urls)
            try:
                async with trio.open_nursery() as telling:
                    if notifier is not None:  # first: events queued meanwhile just wait
                        await telling.start(notifier.run, name="notifier")
                    try:
                        async with trio.open_nursery() as tasks:
                            if handle_signals:
                                tasks.start_soon(watch_signals, tasks.cancel_scope)
                            await tasks.start(poller.run, name="chain poller")
                            await tasks.start(governance.run, poller, name="governance reader")
                            await tasks.start(worker.run, receive, name="retag worker")
                            await tasks.start(watch.run, name="registry watch")
                            await tasks.start(follower.run, name="upgrade follower")
                            if nudger is not None:
                                await tasks.start(nudger.run, name="flux nudger")
                            if notifier is not None:
                                await tasks.start(announcer.run, poller, chain, name="announcer")
                            task_status.started(urls)
                    finally:
                        if notifier is not None:
                            _drain(notifier, telling.cancel_scope)
            finally:
                shutdown.set()
    log.info("stopped")


def _drain(notifier: Notifier, scope: trio.CancelScope) -> None:
    """The tasks have ended: no more events. Give what is queued NOTIFY_DRAIN seconds."""
    pending = notifier.pending()
    notifier.close()  # its run() returns once every queue is delivered or given up on
    if pending:
        log.info("notifications_draining", pending=pending, within_seconds=NOTIFY_DRAIN)
        scope.deadline = min(scope.deadline, trio.current_time() + NOTIFY_DRAIN)
    else:
        scope.cancel()  # nothing queued or being sent: nothing to wait for


def _notifications(
    cfg: Config, tags: rule_records.TagScheme, metrics: Metrics
) -> tuple[Notifier | None, Announcer]:
    """The Notifier and the Announcer feeding it; without a channel, a silent Announcer."""
    settings = cfg.notify
    if not settings.enabled:
        return None, Announcer()
    log.info("notifications", **settings.describe())
    if settings.token_ends_in_newline:
        log.warning(
            "notify_webhook_token_newline",
            detail="NOTIFY_WEBHOOK_TOKEN ends in a newline; it is used byte for byte as the "
            "HMAC key, so a receiver whose key lacks the newline rejects every signature",
        )
    notifier = Notifier(
        settings.channels(cfg.request_timeout),
        events=settings.events,
        metrics=NotifyMetrics(metrics.registry),
        policy=RetryPolicy(attempt_timeout=cfg.request_timeout),
    )
    announcer = Announcer(notifier, tags=tags, request_timeout=cfg.request_timeout)
    return notifier, announcer


def _health(snap: Snapshot) -> tuple[bool, frozenset[str]]:
    """`gopher_updater_ready` and `_problem{kind}` at scrape time, as /readyz sees it."""
    ready, _ = readiness(snap, trio.current_time())
    return ready, snap.problem_kinds


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

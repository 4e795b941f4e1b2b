"""The Apprise channel: Slack, Discord, Telegram, ntfy, PagerDuty… through the Apprise library.

Apprise is imported lazily, only when `NOTIFY_URLS` is set: loaded it costs about 21 MB of
RSS, which a daemon that does not use it should not pay (and it is an optional extra,
`gopher-updater[notify]`). Apprise is synchronous, so every call runs in a worker thread
with `abandon_on_cancel=True` under a per-call deadline; a per-service `CapacityLimiter(1)`
keeps an abandoned call and the next one from sharing a plugin instance, and bounds the
threads a hanging service can hold to one.

Apprise URLs embed their service's tokens, often in the host position (`tgram://<bot
token>/<chat>`), so only the scheme is ever shown. Apprise's own logs, and those of
requests/urllib3 under it, print URLs and request paths (measured with Apprise 2.3.0, even
with `privacy=True`): they are cut off from the root logger and reduced to a count-free
marker by `quiet_library_loggers`.
"""

from __future__ import annotations

import functools
import logging
import re
from types import TracebackType
from typing import Any

import attrs
import trio

from gopher_updater.logs import get_logger
from gopher_updater.notify import (
    EventType,
    NotifyConfigError,
    NotifyEvent,
    render_text,
    safe_name,
)
from gopher_updater.notify_webhook import Attempt

log = get_logger("gopher_updater.notify")

#: Loggers that print URLs, paths or headers of Apprise's requests.
LIBRARY_LOGGERS = ("apprise", "urllib3", "requests", "requests_oauthlib", "oauthlib")
_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]{0,31})://")
_SPLIT = re.compile(r"[\s,]+")
_NOTIFY_TYPE = {
    EventType.PROMOTED: "success",
    EventType.NUDGED: "success",
    EventType.NODE_UPGRADED: "success",
    EventType.RESUMED: "success",
    EventType.SOURCE_MISSING: "warning",
    EventType.SOURCE_MOVED: "warning",
    EventType.RESCHEDULED: "warning",
    EventType.CANCELLED: "warning",
    EventType.REPLACED: "warning",
    EventType.STUCK: "failure",
    EventType.CONFLICT: "failure",
    EventType.INVALID_PLAN: "failure",
}


class _LibraryMarker(logging.Handler):
    """Turns a library's WARNING+ record into a marker event with no message (it may hold a URL)."""

    def emit(self, record: logging.LogRecord) -> None:
        log.warning(
            "notify_library_log", library=record.name, library_level=record.levelname.lower()
        )


_MARKER = _LibraryMarker(logging.WARNING)


def quiet_library_loggers() -> None:
    """Idempotent; called before Apprise is imported so not even import-time records leak."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
        if _MARKER not in logger.handlers:
            logger.addHandler(_MARKER)


class AppriseUnavailableError(NotifyConfigError):
    def __init__(self) -> None:
        super().__init__("NOTIFY_URLS", "needs the Apprise library: install gopher-updater[notify]")


class UnknownSchemeError(NotifyConfigError):
    """No Apprise service has this scheme (and no service recognised the URL natively)."""

    def __init__(self, scheme: str, position: int) -> None:
        hint = (
            "; a plain JSON endpoint goes in NOTIFY_WEBHOOK_URL or as json://"
            if scheme in ("http", "https")
            else " (see Apprise's list of services)"
        )
        super().__init__(
            "NOTIFY_URLS",
            f"URL {position}: unknown scheme {safe_name(scheme, cap=32)!r}{hint}",
        )
        self._scheme = scheme

    @property
    def scheme(self) -> str:
        return self._scheme


class InvalidServiceUrlError(NotifyConfigError):
    """The scheme is known but Apprise rejected the URL (a token or id missing or malformed)."""

    def __init__(self, scheme: str, position: int) -> None:
        super().__init__(
            "NOTIFY_URLS",
            f"URL {position}: not a valid {safe_name(scheme, cap=32)!r} URL for Apprise",
        )
        self._scheme = scheme

    @property
    def scheme(self) -> str:
        return self._scheme


@attrs.frozen
class AppriseTarget:
    """One validated Apprise URL; `scheme` and `service` are all that is ever shown."""

    scheme: str
    service: str
    url: str = attrs.field(repr=False)


def _import_apprise() -> Any:
    quiet_library_loggers()
    try:
        import apprise
    except ImportError:
        raise AppriseUnavailableError() from None
    return apprise


def _asset(apprise: Any) -> Any:
    # In-memory persistent store: the image's root filesystem is read-only, and nothing of
    # Apprise's cache needs to survive a restart.
    return apprise.AppriseAsset(storage_mode="memory")


def parse_notify_urls(text: str | None) -> tuple[AppriseTarget, ...]:
    """`NOTIFY_URLS`: Apprise URLs, comma or space separated, each checked by Apprise itself.

    Raises `UnknownSchemeError` / `InvalidServiceUrlError` naming the URL's position and
    scheme only. Apprise is imported only when there is at least one URL.
    """
    urls = [u for u in _SPLIT.split(text or "") if u]
    if not urls:
        return ()
    apprise = _import_apprise()
    asset = _asset(apprise)
    known = apprise.NotificationManager()  # a singleton: the loaded plugins
    targets = []
    for position, url in enumerate(urls, start=1):
        match = _SCHEME.match(url)
        scheme = match.group(1).lower() if match else ""
        if not scheme:
            raise UnknownSchemeError("none", position)
        plugin = apprise.Apprise.instantiate(url, asset=asset)
        if plugin is None:
            if scheme in known:
                raise InvalidServiceUrlError(scheme, position)
            raise UnknownSchemeError(scheme, position)
        service = safe_name(str(getattr(plugin, "service_name", scheme)), cap=32)
        targets.append(AppriseTarget(scheme=scheme, service=service, url=url))
    return tuple(targets)


def title_for(event: NotifyEvent) -> str:
    return f"gopher-updater: {safe_name(event.chain_id)}"


class AppriseChannel:
    """Sends each event's text to one Apprise service from a worker thread, bounded in time."""

    kind = "apprise"

    def __init__(self, target: AppriseTarget, *, timeout: float = 10.0, name: str = "") -> None:
        self._target = target
        self._timeout = timeout
        self._plugin: Any = None
        self._limiter = trio.CapacityLimiter(1)
        self.name = name or f"apprise:{target.scheme}"
        self.target = target.scheme

    def __repr__(self) -> str:
        return f"AppriseChannel({self.name!r})"

    def _instantiate(self) -> Any:
        apprise = _import_apprise()
        plugin = apprise.Apprise.instantiate(self._target.url, asset=_asset(apprise))
        if plugin is None:  # validated at start-up; only a changed Apprise could get here
            raise InvalidServiceUrlError(self._target.scheme, 0)
        # Let an abandoned call end on its own soon after our deadline gave up on it.
        for attr in ("socket_connect_timeout", "socket_read_timeout"):
            current = getattr(plugin, attr, None)
            if isinstance(current, int | float):
                setattr(plugin, attr, min(float(current), self._timeout))
        return plugin

    async def __aenter__(self) -> AppriseChannel:
        # The import and plugin set-up take a moment; keep them off the event loop.
        self._plugin = await trio.to_thread.run_sync(self._instantiate)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._plugin = None

    async def send(self, event: NotifyEvent) -> Attempt:
        plugin = self._plugin
        if plugin is None:
            raise RuntimeError("AppriseChannel used outside `async with`")
        call = functools.partial(
            plugin.notify,
            body=render_text(event),
            title=title_for(event),
            notify_type=_NOTIFY_TYPE.get(event.type, "info"),
        )
        with trio.move_on_after(self._timeout):
            try:
                ok = await trio.to_thread.run_sync(
                    call, abandon_on_cancel=True, limiter=self._limiter
                )
            except Exception as exc:  # a plugin bug must not end the channel; no message: URLs
                return Attempt(ok=False, retryable=True, detail=type(exc).__name__)
            # Apprise reports only True/False: a refused message and a broken service look alike.
            return Attempt(ok=bool(ok), retryable=not ok, detail="sent" if ok else "not delivered")
        return Attempt(ok=False, retryable=True, detail="timeout")

"""The notification variables, checked at start-up, and the channels they make.

The variables themselves are declared in `config.VARS` like every other one (so `--help`,
the README table, the exit-2 message and the config fuzzer cover them), and `config.load`
reads them with the shared rules (`_FILE` variants through `read_secret_file`). What is
particular to notifications lives here and is called from there: `notify_settings` checks
the values read (webhook URL, Apprise URLs with Apprise imported only when `NOTIFY_URLS` is
set, the token/URL pairing) and raises `NotifyConfigProblems`, whose `lines` go into the
exit-2 message. `parse_events` is `NOTIFY_EVENTS`' parser. `load_notify_settings(env)` is the
older stand-alone reader of the same variables, kept for the notification layer's own tests.

`NOTIFY_WEBHOOK_TOKEN_FILE` is read byte for byte, like `FLUX_RECEIVER_TOKEN_FILE`: a
Flux-style receiver keys its HMAC with the Secret's exact bytes, so stripping a trailing
newline would break every signature. The URL files are stripped: a URL never ends in
whitespace, and editors add a newline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from gopher_updater.notifier import Channel
from gopher_updater.notify import ALL_EVENT_TYPES, EventType, NotifyConfigError, parse_notify_events
from gopher_updater.notify_apprise import AppriseChannel, AppriseTarget, parse_notify_urls
from gopher_updater.notify_webhook import WebhookChannel, check_webhook_url
from gopher_updater.urls import redact_url


class NotifyConfigProblems(ValueError):
    """Every notification variable problem at once; `lines` hold no URL and no token."""

    def __init__(self, errors: tuple[NotifyConfigError, ...]) -> None:
        super().__init__(*errors)
        self._errors = errors

    @property
    def errors(self) -> tuple[NotifyConfigError, ...]:
        return self._errors

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(str(e) for e in self._errors)

    def __str__(self) -> str:
        return "; ".join(self.lines)


@attrs.frozen
class NotifySettings:
    webhook_url: str | None = attrs.field(default=None, repr=False)
    webhook_token: bytes | None = attrs.field(default=None, repr=False)
    apprise: tuple[AppriseTarget, ...] = ()
    events: frozenset[EventType] = ALL_EVENT_TYPES

    @property
    def enabled(self) -> bool:
        return self.webhook_url is not None or bool(self.apprise)

    @property
    def token_ends_in_newline(self) -> bool:
        """Worth a start-up warning: valid, but rarely meant (see the module docstring)."""
        return self.webhook_token is not None and self.webhook_token.endswith(b"\n")

    def describe(self) -> dict[str, Any]:
        """Safe to log and show: hosts and schemes only."""
        return {
            "webhook": None if self.webhook_url is None else redact_url(self.webhook_url),
            "webhook_signed": self.webhook_token is not None,
            "apprise": [t.scheme for t in self.apprise],
            "events": sorted(t.value for t in self.events),
        }

    def channels(self, timeout: float) -> list[Channel]:
        """One channel per service; Apprise names get `#2`, `#3` when a scheme repeats."""
        out: list[Channel] = []
        if self.webhook_url is not None:
            out.append(WebhookChannel(self.webhook_url, self.webhook_token, timeout=timeout))
        seen: dict[str, int] = {}
        for target in self.apprise:
            seen[target.scheme] = seen.get(target.scheme, 0) + 1
            suffix = "" if seen[target.scheme] == 1 else f"#{seen[target.scheme]}"
            out.append(
                AppriseChannel(target, timeout=timeout, name=f"apprise:{target.scheme}{suffix}")
            )
        return out


def _value(
    env: Mapping[str, str],
    name: str,
    read: Callable[[Path], bytes],
    errors: list[NotifyConfigError],
) -> bytes | None:
    """The variable or its `_FILE`, never both; the file's bytes as they are."""
    direct, path = env.get(name) or None, env.get(f"{name}_FILE") or None
    if direct is not None and path is not None:
        errors.append(NotifyConfigError(name, f"set either {name} or {name}_FILE, not both"))
        return None
    if path is None:
        return None if direct is None else direct.encode()
    try:
        data = read(Path(path))
    except OSError as exc:
        errors.append(NotifyConfigError(f"{name}_FILE", f"cannot read {path!r}: {exc.strerror}"))
        return None
    if not data.strip():
        errors.append(NotifyConfigError(f"{name}_FILE", f"{path!r} is empty"))
        return None
    return data


def _text(data: bytes | None, name: str, errors: list[NotifyConfigError]) -> str | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8").strip() or None
    except UnicodeDecodeError:
        errors.append(NotifyConfigError(name, "not UTF-8 text"))
        return None


def parse_events(value: str) -> frozenset[EventType]:
    """`NOTIFY_EVENTS` for `config.VARS`: a ValueError whose text does not repeat the name."""
    try:
        return parse_notify_events(value)
    except NotifyConfigError as exc:
        raise ValueError(exc.message) from None


def notify_settings(
    *,
    webhook_url: str | None = None,
    webhook_token: bytes | None = None,
    urls: str | None = None,
    events: frozenset[EventType] = ALL_EVENT_TYPES,
) -> NotifySettings:
    """Check the values read; raise `NotifyConfigProblems` listing every problem."""
    errors: list[NotifyConfigError] = []
    settings = _check(webhook_url, webhook_token, urls, events, errors)
    if errors:
        raise NotifyConfigProblems(tuple(errors))
    return settings


def _check(
    url: str | None,
    token: bytes | None,
    urls: str | None,
    events: frozenset[EventType],
    errors: list[NotifyConfigError],
) -> NotifySettings:
    url = (url.strip() or None) if url is not None else None
    urls = (urls.strip() or None) if urls is not None else None
    webhook: str | None = None
    if url is not None:
        try:
            webhook = check_webhook_url(url)
        except NotifyConfigError as exc:
            errors.append(exc)
    if token is not None and url is None:
        errors.append(NotifyConfigError("NOTIFY_WEBHOOK_TOKEN", "set without NOTIFY_WEBHOOK_URL"))
    targets: tuple[AppriseTarget, ...] = ()
    try:
        targets = parse_notify_urls(urls)
    except NotifyConfigError as exc:
        errors.append(exc)
    return NotifySettings(webhook_url=webhook, webhook_token=token, apprise=targets, events=events)


def load_notify_settings(
    env: Mapping[str, str], *, read: Callable[[Path], bytes] = Path.read_bytes
) -> NotifySettings:
    """Read and check every notification variable; raise `NotifyConfigProblems` listing all."""
    errors: list[NotifyConfigError] = []
    url = _text(_value(env, "NOTIFY_WEBHOOK_URL", read, errors), "NOTIFY_WEBHOOK_URL", errors)
    token = _value(env, "NOTIFY_WEBHOOK_TOKEN", read, errors)
    urls = _text(_value(env, "NOTIFY_URLS", read, errors), "NOTIFY_URLS", errors)
    events = ALL_EVENT_TYPES
    try:
        events = parse_notify_events(env.get("NOTIFY_EVENTS"))
    except NotifyConfigError as exc:
        errors.append(exc)
    settings = _check(url, token, urls, events, errors)
    if errors:
        raise NotifyConfigProblems(tuple(errors))
    return settings

"""What gets told to people: the upgrade's timeline as events, their JSON and their one line.

This module is pure (no I/O, no Apprise): the daemon's timeline produces `NotifyEvent`
values, and the channels (`notify_webhook`, `notify_apprise`, run by `notifier.Notifier`)
only carry them. Keeping the value, its wire form and its text here means the schema the
README documents has exactly one definition, and producing an event is one constructor call.

Plan names and chain ids come from the chain and are untrusted. In the JSON body they are
exact (JSON escaping keeps them inert) but length-capped; in the human `text`, which lands in
Slack/Discord/Telegram where markup and mentions are live, anything outside the tag alphabet
is replaced, so a plan named `<!channel>` or `@everyone` can't ping a whole team.
"""

from __future__ import annotations

import enum
import json
import math
import re
import time
from typing import Any

import attrs

#: The wire schema's version; it only ever grows (new fields, new event types), so a
#: receiver written against version 1 keeps working.
SCHEMA_VERSION = 1
_JSON_STRING_CAP = 256
_TEXT_NAME_CAP = 48
_UNSAFE_IN_TEXT = re.compile(r"[^A-Za-z0-9_.-]")
_SPLIT = re.compile(r"[\s,]+")


class EventType(enum.StrEnum):
    """Every transition an operator hears about, in the order an upgrade goes through them."""

    SCHEDULED = "scheduled"
    SOURCE_MISSING = "source_missing"
    REMINDER = "reminder"
    SOURCE_MOVED = "source_moved"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"
    REPLACED = "replaced"
    HALTED = "halted"
    PROMOTED = "promoted"
    NUDGED = "nudged"
    NODE_UPGRADED = "node_upgraded"
    RESUMED = "resumed"
    STUCK = "stuck"
    CONFLICT = "conflict"
    INVALID_PLAN = "invalid_plan"


ALL_EVENT_TYPES: frozenset[EventType] = frozenset(EventType)


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@attrs.frozen
class NotifyEvent:
    """One step of one plan's timeline.

    `height` is always the plan's H (for `rescheduled`, the new H; the old one is
    `previous_height`). `occurrence` tells apart the legitimate repeats of one type for one
    plan — `reminder` at `24h` and `1h`, `source_missing` when `first` found and again at
    the `1h` reminder — and is part of the dedupe key, so the producer decides what may
    repeat and the notifier guarantees everything else is sent once.
    """

    type: EventType = attrs.field(converter=EventType)
    chain_id: str
    plan: str
    height: int
    at: float = attrs.field(factory=time.time, converter=float)
    eta_seconds: float | None = attrs.field(default=None, converter=_finite_or_none)
    source_tag: str | None = None
    target_tag: str | None = None
    digest: str | None = None
    occurrence: str = ""
    source_present: bool | None = None
    previous_digest: str | None = None
    previous_height: int | None = None
    new_plan: str | None = None
    new_height: int | None = None
    delay_seconds: float | None = attrs.field(default=None, converter=_finite_or_none)
    halt_duration_seconds: float | None = attrs.field(default=None, converter=_finite_or_none)

    @property
    def dedupe_key(self) -> tuple[str, str, int, str]:
        return (self.type.value, self.plan, self.height, self.occurrence)


# --------------------------------------------------------------------------- text


def safe_name(value: str | None, cap: int = _TEXT_NAME_CAP) -> str:
    """An untrusted name made inert for chat markup: tag alphabet only, length-capped."""
    if not value:
        return "?"
    cleaned = _UNSAFE_IN_TEXT.sub("?", value[: cap + 1])
    return cleaned if len(cleaned) <= cap else cleaned[: cap - 1] + "…"


def human_duration(seconds: float) -> str:
    """`0.2 s`, `42 s`, `4 m 12 s`, `23 h 59 m`, `2 d 3 h`: what a person reads at a glance."""
    s = max(0.0, seconds)
    if s < 10:
        return f"{s:.1f} s"
    whole = round(s)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} m {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} m"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def _eta(event: NotifyEvent) -> str:
    if event.eta_seconds is None:
        return "ETA unknown"
    when = time.gmtime(event.at + event.eta_seconds)
    return "ETA " + time.strftime("%a %H:%M UTC", when)


def _short(digest: str | None) -> str:
    if not digest:
        return "?"
    algo, _, rest = digest.partition(":")
    hexpart = re.sub(r"[^0-9a-f]", "", rest[:64])[:12]
    return f"{safe_name(algo, cap=10)}:{hexpart}" if hexpart else safe_name(digest, cap=24)


def _image(event: NotifyEvent) -> str:
    if event.source_present is None:
        return "image not checked yet"
    return "image ready" if event.source_present else f"image {safe_name(event.source_tag)} missing"


def _h(height: int | None) -> str:
    return "?" if height is None else f"{height:,}"


def render_text(event: NotifyEvent) -> str:
    """The one human line for an event; pure, so tests and the README can show exact output."""
    p, h, t = safe_name(event.plan), _h(event.height), event.type
    delay = "" if event.delay_seconds is None else human_duration(event.delay_seconds)
    lasted = (
        "?" if event.halt_duration_seconds is None else human_duration(event.halt_duration_seconds)
    )
    match t:
        case EventType.SCHEDULED:
            return f"{p} scheduled at {h}, {_eta(event)}, {_image(event)}"
        case EventType.SOURCE_MISSING:
            return f"{p} at {h}: source image {safe_name(event.source_tag)} missing, {_eta(event)}"
        case EventType.REMINDER:
            left = "?" if event.eta_seconds is None else human_duration(event.eta_seconds)
            return f"{p} at {h} in {left}, {_eta(event)}, {_image(event)}"
        case EventType.SOURCE_MOVED:
            return (
                f"{p}: source {safe_name(event.source_tag)} moved since preflight "
                f"(was {_short(event.previous_digest)}, now {_short(event.digest)})"
            )
        case EventType.RESCHEDULED:
            return f"{p} rescheduled from {_h(event.previous_height)} to {h}, {_eta(event)}"
        case EventType.CANCELLED:
            return f"{p} at {h} cancelled, nothing will be promoted"
        case EventType.REPLACED:
            return f"{p} at {h} replaced by {safe_name(event.new_plan)} at {_h(event.new_height)}"
        case EventType.HALTED:
            return f"{p}: chain halted at {h}"
        case EventType.PROMOTED:
            later = f", promoted {delay} later" if delay else ", promoted"
            return f"{p} halted{later}: {safe_name(event.target_tag)} = {_short(event.digest)}"
        case EventType.NUDGED:
            after = f" {delay} after the halt" if delay else ""
            return f"{p}: Flux nudged{after}"
        case EventType.NODE_UPGRADED:
            return f"{p}: node runs the new binary (applied at {h})"
        case EventType.RESUMED:
            return f"{p}: chain resumed after {lasted}"
        case EventType.STUCK:
            return f"{p}: chain still halted at {h} after {lasted}"
        case EventType.CONFLICT:
            return (
                f"{p}: target {safe_name(event.target_tag)} holds {_short(event.previous_digest)}, "
                f"not {_short(event.digest)}; nothing written"
            )
        case EventType.INVALID_PLAN:
            return f"plan {p} at {h}: name can't be part of a tag, not promoted"


# --------------------------------------------------------------------------- JSON


def _cap(value: str | None) -> str | None:
    return None if value is None else value[:_JSON_STRING_CAP]


def event_id(event: NotifyEvent) -> str:
    """Stable across restarts, so a receiver can drop the one repeat a restart may cause."""
    parts = (event.chain_id, event.plan, str(event.height), event.type.value, event.occurrence)
    return "/".join(_cap(part) or "" for part in parts)


def event_json(event: NotifyEvent) -> dict[str, Any]:
    """The documented schema (README "Notifications"): every key always present, null if unknown."""
    return {
        "schema": SCHEMA_VERSION,
        "id": event_id(event),
        "type": event.type.value,
        "chain_id": _cap(event.chain_id),
        "plan": _cap(event.plan),
        "height": event.height,
        "eta_seconds": event.eta_seconds,
        "source_tag": _cap(event.source_tag),
        "target_tag": _cap(event.target_tag),
        "digest": _cap(event.digest),
        "at": event.at,
        "occurrence": _cap(event.occurrence),
        "source_present": event.source_present,
        "previous_digest": _cap(event.previous_digest),
        "previous_height": event.previous_height,
        "new_plan": _cap(event.new_plan),
        "new_height": event.new_height,
        "delay_seconds": event.delay_seconds,
        "halt_duration_seconds": event.halt_duration_seconds,
        "text": render_text(event),
    }


def encode_event(event: NotifyEvent) -> bytes:
    """The exact body bytes: serialised once, so the HMAC signs what is sent."""
    return json.dumps(
        event_json(event), separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


# --------------------------------------------------------------------------- NOTIFY_EVENTS


class NotifyConfigError(ValueError):
    """A notification variable the daemon can't use; `str()` is one line for the exit-2 list.

    The message never contains a URL or a token: only the variable, and at most a scheme or
    an event name the operator wrote.
    """

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(variable, message)

    @property
    def variable(self) -> str:
        return str(self.args[0])

    @property
    def message(self) -> str:
        return str(self.args[1])

    def __str__(self) -> str:
        return f"{self.variable}: {self.message}"


class UnknownEventTypeError(NotifyConfigError):
    """`NOTIFY_EVENTS` names something that is not an event type; lists the valid ones."""

    def __init__(self, unknown: tuple[str, ...]) -> None:
        shown = ", ".join(repr(safe_name(name, cap=32)) for name in unknown)
        valid = ", ".join(t.value for t in EventType)
        super().__init__("NOTIFY_EVENTS", f"unknown event type {shown}; valid: all, {valid}")
        self._unknown = unknown

    @property
    def unknown(self) -> tuple[str, ...]:
        return self._unknown


def parse_notify_events(text: str | None) -> frozenset[EventType]:
    """`NOTIFY_EVENTS`: comma/space separated types, any case; unset, empty or `all` = all."""
    names = [n for n in _SPLIT.split((text or "").strip().lower()) if n]
    valid = {t.value: t for t in EventType}
    unknown = tuple(dict.fromkeys(n for n in names if n not in valid and n != "all"))
    if unknown:
        raise UnknownEventTypeError(unknown)
    if not names or "all" in names:
        return ALL_EVENT_TYPES
    return frozenset(valid[n] for n in names)

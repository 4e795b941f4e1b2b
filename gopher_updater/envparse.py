"""Reading environment variables declaratively: `Var`, the shared parsers, the shared rules.

`config.VARS` is a table of `Var`s; everything here is generic so that a new variable (a URL
with a `_FILE` variant, a comma-separated list of URLs, a Go duration with bounds) is a few
declarative lines there. Every parser takes the stripped string and raises ValueError with a
message saying what is expected; it never quotes the value (the loader decides how a value may
be shown: quoted, redacted, or not at all for secrets).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from gopher_updater.duration import DurationError, parse_go_duration
from gopher_updater.secret import Secret, SecretFileError, read_secret_file
from gopher_updater.urls import (
    CheckedUrl,
    LcdEndpoint,
    Userinfo,
    check_host,
    check_url,
    redact_url,
)

_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def url(*, userinfo: Userinfo = "refuse", example: str) -> Callable[[str], CheckedUrl]:
    def parse(value: str) -> CheckedUrl:
        try:
            return check_url(value, userinfo=userinfo)
        except ValueError as exc:
            raise ValueError(f"{exc}; expected e.g. {example}") from None

    return parse


def duration(*, floor: str, ceiling: str) -> Callable[[str], float]:
    """A Go duration in seconds, within [floor, ceiling] (themselves Go durations)."""
    low, high = parse_go_duration(floor), parse_go_duration(ceiling)

    def parse(value: str) -> float:
        try:
            ns = parse_go_duration(value)
        except DurationError as exc:
            raise ValueError(f"{exc}; expected a Go duration like 30s, 1m30s, 1.5h") from None
        if not low <= ns <= high:
            raise ValueError(f"must be between {floor} and {ceiling}")
        return ns / 1e9

    return parse


def comma_list(item: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    """`a, b, c` -> a tuple of parsed items; an empty item or a bad one names its position."""

    def parse(value: str) -> tuple[Any, ...]:
        out, problems = [], []
        for n, part in enumerate(value.split(","), start=1):
            try:
                if not part.strip():
                    raise ValueError("empty item")
                out.append(item(part.strip()))
            except ValueError as exc:
                problems.append(f"item {n}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return tuple(out)

    return parse


def url_list(*, max_items: int, example: str) -> Callable[[str], tuple[LcdEndpoint, ...]]:
    """Comma-separated base URLs, userinfo split off each; at most `max_items`, no repeats.

    Two entries are the same endpoint when their `label` (scheme://host:port) and path agree,
    whatever their credentials: asking one node twice is never what was meant.
    """
    items = comma_list(url(userinfo="split", example=example))

    def parse(value: str) -> tuple[LcdEndpoint, ...]:
        endpoints = tuple(LcdEndpoint.from_checked(c) for c in items(value))
        if len(endpoints) > max_items:
            raise ValueError(f"{len(endpoints)} URLs; at most {max_items}")
        seen: dict[tuple[str, str], int] = {}
        for n, endpoint in enumerate(endpoints, start=1):
            key = (endpoint.label, endpoint.path)
            if key in seen:
                raise ValueError(f"item {n}: the same endpoint as item {seen[key]}")
            seen[key] = n
        return endpoints

    return parse


def integer(*, low: int, high: int) -> Callable[[str], int]:
    """A decimal integer in [low, high] (ASCII digits only: no sign, no `1e3`, no `٣`)."""

    def parse(value: str) -> int:
        if re.fullmatch(r"[0-9]{1,6}", value) is None or not low <= int(value) <= high:
            raise ValueError(f"expected an integer {low}-{high}")
        return int(value)

    return parse


def port(value: str) -> int:
    if re.fullmatch(r"[0-9]{1,5}", value) is None or not 1 <= int(value) <= 65535:
        raise ValueError("expected an integer 1-65535")
    return int(value)


def boolean(value: str) -> bool:
    try:
        return _BOOLS[value.lower()]
    except KeyError:
        raise ValueError("expected true/false/1/0/yes/no") from None


def choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.lower() not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return value.lower()

    return parse


def host(value: str) -> str:
    try:
        return check_host(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; e.g. 0.0.0.0, 127.0.0.1, ::, localhost") from None


def quoted(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


@attrs.frozen
class Var:
    """One variable: how to read it, and how to show it in an error."""

    name: str
    default: str | None
    help: str
    parse: Callable[[str], Any] = str
    mandatory: bool = False
    #: Kept as a `Secret`, never echoed, not stripped; `NAME_FILE` may name a file holding it.
    secret: bool = False
    #: With `secret`: read `NAME_FILE` byte-exact (no trailing newline stripped).
    exact: bool = False
    #: "" is a choice, not "unset" (SOURCE_PREFIX).
    empty_is_value: bool = False
    #: For a single URL parsed with userinfo="split": the Config field receiving the
    #: credentials. (A list of URLs, `url_list`, keeps each one's credentials with it.)
    auth_attr: str | None = None
    show: Callable[[str], str] = quoted
    #: The Config field receiving the value, when it is not the lower-cased name.
    field: str | None = None

    @property
    def attr(self) -> str:
        return self.field or self.name.lower()

    @property
    def file_name(self) -> str | None:
        return self.name + "_FILE" if self.secret else None


def show_url(value: str) -> str:
    """A URL as an error message may show it: credentials masked, clipped to one line."""
    return clip(redact_url(value, keep_path=True))


def clip(text: str, limit: int = 120) -> str:
    """An over-long value is named, not echoed in full: one readable line per variable."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def present(env: Mapping[str, str | None], name: str, problems: list[str]) -> str | None:
    """The raw value, None when unset or "", after the whitespace-only rule."""
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    if not raw.strip():
        problems.append(f"{name}: only whitespace; give a value, or unset it")
        return None
    return raw


def secret_from_env(env: Mapping[str, str | None], var: Var, problems: list[str]) -> Secret | None:
    """`NAME` or the file named by `NAME_FILE` (never both), as a Secret; None if problems."""
    file_name = var.file_name or ""
    value = present(env, var.name, problems)
    path = present(env, file_name, problems)
    if value is not None and path is not None:
        problems.append(f"{var.name}: set either {var.name} or {file_name}, not both")
        return None
    if path is not None:
        try:
            return read_secret_file(path.strip(), exact=var.exact)
        except SecretFileError as exc:
            problems.append(f"{file_name}: {exc}")
            return None
    if value is None:
        if var.mandatory and not any(p.startswith(var.name) for p in problems):
            problems.append(f"{var.name}: missing (set it or {file_name})")
        return None
    return Secret(value)

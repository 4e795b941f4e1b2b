"""Go duration syntax, exactly as Go's `time.ParseDuration` reads it.

Operators coming from the Go gopher-updater (and from Kubernetes/Flux manifests) write
`POLL_INTERVAL=1m30s`; Python has no parser for that, and "almost Go" parsers disagree on the
edge cases (`1.`, `.5s`, `-0`, `1h-1m`, overflow). This is a line-by-line port of Go 1.22's
`time.ParseDuration` so the same string means the same thing in both daemons. The result is
integer nanoseconds, like Go's `time.Duration`.
"""

from __future__ import annotations

_UNITS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_MAX = 1 << 63  # |math.MinInt64|; positive values must stay below it


class DurationError(ValueError):
    """A string Go's time.ParseDuration would reject; the message matches Go's wording."""


def _leading_int(s: str) -> tuple[int, str]:
    x = 0
    i = 0
    while i < len(s) and "0" <= s[i] <= "9":
        if x > (_MAX - 1) // 10:
            raise OverflowError
        x = x * 10 + ord(s[i]) - ord("0")
        if x > _MAX:
            raise OverflowError
        i += 1
    return x, s[i:]


def _leading_fraction(s: str) -> tuple[int, float, str]:
    x = 0
    scale = 1.0
    overflow = False
    i = 0
    while i < len(s) and "0" <= s[i] <= "9":
        if not overflow:
            if x > (_MAX - 1) // 10:
                overflow = True
            else:
                y = x * 10 + ord(s[i]) - ord("0")
                if y > _MAX:
                    overflow = True
                else:
                    x = y
                    scale *= 10
        i += 1
    return x, scale, s[i:]


def parse_go_duration(text: str) -> int:
    """Return the duration in nanoseconds, or raise `DurationError` like Go would."""
    orig = text
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise DurationError(f"time: invalid duration {orig!r}")
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise DurationError(f"time: invalid duration {orig!r}")
        before = len(s)
        try:
            v, s = _leading_int(s)
        except OverflowError:
            raise DurationError(f"time: invalid duration {orig!r}") from None
        pre = before != len(s)
        f, scale, post = 0, 1.0, False
        if s and s[0] == ".":
            s = s[1:]
            before = len(s)
            f, scale, s = _leading_fraction(s)
            post = before != len(s)
        if not pre and not post:
            raise DurationError(f"time: invalid duration {orig!r}")
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise DurationError(f"time: missing unit in duration {orig!r}")
        unit_name, s = s[:i], s[i:]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise DurationError(f"time: unknown unit {unit_name!r} in duration {orig!r}")
        if v > _MAX // unit:
            raise DurationError(f"time: invalid duration {orig!r}")
        v *= unit
        if f > 0:
            # Go does this part in float64 on purpose; int() truncates like uint64().
            v += int(float(f) * (float(unit) / scale))
            if v > _MAX:
                raise DurationError(f"time: invalid duration {orig!r}")
        total += v
        if total > _MAX:
            raise DurationError(f"time: invalid duration {orig!r}")
    if neg:
        return -total
    if total > _MAX - 1:
        raise DurationError(f"time: invalid duration {orig!r}")
    return total


def parse_go_duration_seconds(text: str) -> float:
    return parse_go_duration(text) / 1e9


def format_seconds(seconds: float) -> str:
    """Render seconds back in Go's short style for messages and /status (`1m30s`, `250ms`)."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole_minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(whole_minutes), 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + f"{secs:g}s"

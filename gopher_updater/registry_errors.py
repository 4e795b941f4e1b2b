"""Registry errors, and the parsers of everything a registry says about a failure.

The error classes are the contract with the rest of the daemon (worker, check, /readyz):
whether to retry is the class (`RegistryUnavailable.retryable`), the context an operator needs
(operation, tag, HTTP status, registry error code, Retry-After) is frozen into the error when
it is raised, and the message has been scrubbed of credentials before anyone can read it.

The parsers (error bodies, `WWW-Authenticate`, `Retry-After`, Docker Hub's `ratelimit-*`)
read untrusted input: each returns a value or a safe default (None, empty) for anything
malformed, oversized or hostile, and never raises.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import attrs
import httpx

from gopher_updater.logs import get_logger
from gopher_updater.registry_body import MAX_ERROR_BYTES, bounded_number, loads_bounded
from gopher_updater.safe_text import redact_text

log = get_logger("gopher_updater.registry")

#: A Retry-After or rate-limit window above this is treated as this (a week).
MAX_ADVERTISED_WAIT = 7 * 24 * 3600.0
_MAX_MESSAGE = 300
_MAX_HEADER = 8192
_MAX_CHALLENGES = 16


@attrs.frozen
class ErrorContext:
    """What an operator needs to act on a registry failure; frozen into the error."""

    message: str
    operation: str | None = None
    tag: str | None = None
    status: int | None = None
    code: str | None = None
    retry_after: float | None = None


_DUNDER_ALLOWED = frozenset(
    {"__traceback__", "__cause__", "__context__", "__suppress_context__", "__notes__"}
)


class RegistryError(Exception):
    """Base of every registry failure; immutable once raised.

    `retryable` is the class's (only `RegistryUnavailable` is); `retry_after` is what the
    registry asked for. Messages are redacted at construction, so no code path can put a
    credential the registry echoed into a log line, a page or `check` output.
    """

    retryable: ClassVar[bool] = False
    __slots__ = ("_context",)
    _context: ErrorContext

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        tag: str | None = None,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        context = ErrorContext(
            redact_text(message)[:_MAX_MESSAGE],
            operation,
            tag[:140] if tag else tag,
            status,
            redact_text(code)[:80] if code else None,
            retry_after,
        )
        super().__init__(context.message)
        object.__setattr__(self, "_context", context)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _DUNDER_ALLOWED:
            raise AttributeError(f"{type(self).__name__} is immutable ({name})")
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable ({name})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._context))

    @property
    def context(self) -> ErrorContext:
        return self._context

    @property
    def message(self) -> str:
        return self._context.message

    @property
    def operation(self) -> str | None:
        return self._context.operation

    @property
    def tag(self) -> str | None:
        return self._context.tag

    @property
    def status(self) -> int | None:
        return self._context.status

    @property
    def code(self) -> str | None:
        return self._context.code

    @property
    def retry_after(self) -> float | None:
        return self._context.retry_after

    def with_context(self, operation: str, tag: str | None) -> RegistryError:
        """This error with operation/tag filled in where the raiser (the auth flow) could not
        know them: a new error, since a raised one never changes."""
        if self.operation and (self.tag or not tag):
            return self
        context = attrs.evolve(
            self._context, operation=self.operation or operation, tag=self.tag or tag
        )
        return _rebuild(type(self), context)

    def __str__(self) -> str:
        c = self._context
        where = " ".join(p for p in (c.operation, c.tag) if p)
        extra = ", ".join(p for p in (f"HTTP {c.status}" if c.status else "", c.code or "") if p)
        return f"{where + ': ' if where else ''}{c.message}{f' [{extra}]' if extra else ''}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


def _rebuild(cls: type[RegistryError], context: ErrorContext) -> RegistryError:
    return cls(**attrs.asdict(context))


class RegistryAuthError(RegistryError):
    """Credentials rejected, or they do not grant what the operation needs."""


class RegistryUnavailable(RegistryError):
    """Timeouts, connection errors, 408/429/5xx: retried, and raised once retries run out."""

    retryable: ClassVar[bool] = True


class RegistryRequestError(RegistryError):
    """Any other 4xx, or an answer we refuse (too large, wrong type): retrying cannot help."""


class ManifestUnknown(RegistryRequestError):
    """The tag does not exist (404 / MANIFEST_UNKNOWN / NAME_UNKNOWN)."""


class RegistryTLSError(RegistryError):
    """The registry's certificate was refused (unknown CA, hostname mismatch, expired): not
    retried, since only the operator can fix it (`SSL_CERT_FILE`, or the URL)."""


class DigestMismatch(RegistryError):
    """The registry's `Docker-Content-Digest` disagrees with the bytes we hashed."""


# -- parsers ----------------------------------------------------------------------------------


@attrs.frozen
class Challenge:
    """One `WWW-Authenticate` challenge: scheme (lower-case) and its parameters."""

    scheme: str
    params: Mapping[str, str] = attrs.field(factory=dict)


def parse_challenges(header_values: Iterable[str]) -> list[Challenge]:
    """Parse `WWW-Authenticate` values; several challenges may share one header line.

    `Bearer realm="https://a/token",service="s",error="insufficient_scope"` -> Challenge.
    A comma inside a quoted value (a scope list `pull,push`) is respected. Oversized values
    and challenges past the 16th are ignored.
    """
    found: list[tuple[str, dict[str, str]]] = []
    for value in header_values:
        if len(value) > _MAX_HEADER:
            continue
        current: dict[str, str] | None = None
        for item in urllib.request.parse_http_list(value):
            item = item.strip()
            if not item:
                continue
            head, sep, rest = item.partition(" ")
            if "=" not in head:  # a new scheme starts here (maybe with its first param)
                if len(found) >= _MAX_CHALLENGES:
                    break
                current = {}
                found.append((head.lower(), current))
                item = rest.strip() if sep else ""
                if not item:
                    continue
            if current is None or "=" not in item:
                continue
            key, _, raw = item.partition("=")
            raw = raw.strip()
            if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                raw = raw[1:-1].replace('\\"', '"')
            current[key.strip().lower()] = raw
    return [Challenge(scheme, params) for scheme, params in found]


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """`Retry-After` as seconds to wait (delta-seconds or an HTTP date), clamped to
    [0, a week]; None if absent or garbage. A date in the past means 0."""
    if value is None or len(value) > 100:
        return None
    value = value.strip()
    seconds = bounded_number(value, low=0.0, high=MAX_ADVERTISED_WAIT)
    if seconds is not None or not value or value[0] in "+-.0123456789":
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        delta = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return bounded_number(delta, low=0.0, high=MAX_ADVERTISED_WAIT)


def parse_ratelimit(value: str | None) -> tuple[int, float | None] | None:
    """Docker Hub's `ratelimit-remaining: 76;w=21600` -> (76, 21600.0); None if absent/garbage.

    A window that is not a finite, non-negative number (`w=nan`, `w=-5`) is None.
    """
    if not value or len(value) > 200:
        return None
    count, _, rest = value.partition(";")
    window = None
    for part in rest.split(";"):
        key, _, raw = part.strip().partition("=")
        if key == "w":
            number = bounded_number(raw.strip(), low=-1.0, high=MAX_ADVERTISED_WAIT)
            window = number if number is not None and number >= 0 else None
    count = count.strip()
    if not count.isascii() or not count.isdigit() or len(count) > 18:
        return None
    return int(count), window


def parse_registry_error(body: bytes) -> tuple[str | None, str]:
    """(code, message) from a distribution `{"errors": [...]}` body, or its plain text."""
    body = body[:MAX_ERROR_BYTES]
    doc = loads_bounded(body)
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code, message = errors[0].get("code"), errors[0].get("message")
        code = code[:80] if isinstance(code, str) and code else None
        text = message[:_MAX_MESSAGE] if isinstance(message, str) else str(message)[:80]
        return code, text + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")
    lines = body[:4096].decode("utf-8", "replace").strip().splitlines()
    return None, (lines[0][:200] if lines else "")


def error_for_response(
    response: httpx.Response, operation: str, tag: str | None, redact: Callable[[str], str]
) -> RegistryError:
    """Map a registry answer that is not 2xx to the typed error (retryable or final)."""
    status = response.status_code
    code, message = parse_registry_error(response.content)
    message = redact(message) or response.reason_phrase
    code = redact(code) if code else None

    def error(
        cls: type[RegistryError], text: str, retry_after: float | None = None
    ) -> RegistryError:
        return cls(text, operation=operation, tag=tag, status=status, code=code,
                   retry_after=retry_after)  # fmt: skip

    if status == 401:
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        if any(c.params.get("error") == "insufficient_scope" for c in challenges):
            return error(RegistryAuthError, "credentials lack write access (insufficient_scope)")
        return error(
            RegistryAuthError, f"bad credentials, or no access to the repository: {message}"
        )
    if status == 403 and response.request.method == "PUT":
        return error(RegistryRequestError, f"tag immutable or no write permission: {message}")
    if status == 404 and tag is not None:
        return error(ManifestUnknown, f"not found: {message}")
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        limit = parse_ratelimit(response.headers.get("ratelimit-remaining"))
        if status == 429 and limit is not None and limit[0] == 0:
            retry_after = retry_after if retry_after is not None else limit[1]
            log.warning("registry pull rate limit exhausted", retry_in=retry_after)
        return error(RegistryUnavailable, message, retry_after)
    return error(RegistryRequestError, message)

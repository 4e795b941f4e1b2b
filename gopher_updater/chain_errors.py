"""What can go wrong talking to an LCD, and how chain data is made safe to put in a URL.

Why a module of its own: the daemon reads governance at start-up, so any exception escaping
the chain client there is a crash loop, and a crash loop at the halt means the upgrade is
never promoted. Every failure is therefore one of the typed `ChainError`s below, each
carrying the route asked (`endpoint`, a path without query) and the LCD it was asked of
(`origin`, `scheme://host:port`, never credentials), so several LCDs can be told apart in
logs and on `/status` without leaking a password from `RPC_URL`.

Plan names are free text chosen on chain (reference §3.3): spaces, slashes and dots are
real. They are percent-encoded as ONE path segment; names no SDK would schedule and no URL
can carry (empty, control characters, lone surrogates, absurd lengths) are refused with a
typed error instead of surfacing as `httpx.InvalidURL` or `UnicodeEncodeError`.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

import httpx

#: Longest plan name (UTF-8 bytes) the client will ask `applied_plan` about. The SDK sets no
#: limit, but a tag holds at most 128 characters, so a longer name can never be promoted.
MAX_PLAN_NAME_BYTES = 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


class ChainError(Exception):
    """The LCD gave no usable answer. `endpoint` is the path asked, `reason` says why.

    `origin` is the LCD as `scheme://host:port` ("" when unknown); it is part of the message
    so that, with several LCDs, an operator can tell which one failed.
    """

    def __init__(self, endpoint: str, reason: str, *, origin: str = "") -> None:
        super().__init__(endpoint, reason)
        self.endpoint = endpoint
        self.reason = reason
        self.origin = origin

    def __str__(self) -> str:
        where = f" on {self.origin}" if self.origin else ""
        return f"{self.endpoint}{where}: {self.reason}"


class ChainUnreachable(ChainError):
    """Connection refused, reset, or closed before the answer was complete."""


class ChainTimeout(ChainError):
    """No complete answer within the configured timeout."""


class ChainHTTPError(ChainError):
    """A non-2xx answer; `code`/`message` are the gRPC ones from the body when it has them."""

    def __init__(
        self, endpoint: str, status: int, code: int | None, message: str, *, origin: str = ""
    ) -> None:
        detail = f"HTTP {status}" + (f", code {code}" if code is not None else "")
        super().__init__(endpoint, f"{detail}: {message}", origin=origin)
        self.status = status
        self.code = code
        self.message = message


class ChainNotImplemented(ChainHTTPError):
    """HTTP 501: the node does not serve this route (gov v1 on SDK <= v0.45)."""


class ChainMalformed(ChainError):
    """The answer is not JSON, not the expected shape, too big, too deep, or out of range."""


class ChainInvalidRequest(ChainError):
    """No request could be built from chain-supplied data (e.g. a plan name no URL carries).

    Raised before anything is sent. Like every `ChainError` it means "no observation":
    the plan it concerns is reported, never promoted on a guess.
    """


def origin_of(url: httpx.URL) -> str:
    """`scheme://host:port` of `url`: what errors, logs and metric labels may name."""
    host = url.host
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = url.port if url.port is not None else _DEFAULT_PORTS.get(url.scheme)
    return f"{url.scheme}://{host}" + (f":{port}" if port is not None else "")


def plan_name_problem(name: str) -> str | None:
    """Why `name` cannot be asked about in `applied_plan/{name}`, or None when it can."""
    if not name:
        return "plan name is empty"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "plan name is not valid Unicode (lone surrogate)"
    if size > MAX_PLAN_NAME_BYTES:
        return f"plan name is {size} bytes long (limit {MAX_PLAN_NAME_BYTES})"
    bad = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        return f"plan name holds control character {bad!r}"
    return None


def plan_name_segment(name: str) -> str:
    """Percent-encode a plan name as one path segment; ValueError if it cannot be one.

    `/`, `?`, `#`, `%`, spaces and non-ASCII are all encoded, so the name can neither add a
    path segment nor start a query. "." and ".." would be removed by URL normalisation, so
    their dots are encoded too and the name reaches the LCD as it is.
    """
    problem = plan_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    segment = quote(name, safe="")
    return segment.replace(".", "%2E") if segment.strip(".") == "" else segment

"""Words safe to show: credentials scrubbed from server text, root causes out of exceptions.

Shared by every client of an outside system (the registry client; the chain's LCD client for
its connection failures): whatever a server echoes back ends up in errors, logs, `/readyz` and
`check` output, so it is scrubbed in one way everywhere; and a TLS failure should say "unable
to get local issuer certificate", not `ConnectError: `.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable

REDACTED = "<redacted>"
_SECRET_PATTERNS = (
    # An Authorization header value echoed back: `Basic dXNlcjpwdw==`, `Bearer abc.def`.
    # A credential has a digit or a base64/token symbol in it, or is long, and is not a
    # challenge parameter: "Bearer challenge" and `Basic realm="r"` stay readable.
    re.compile(
        r"(?i)\b(basic|bearer)(\s+|%20|\+)(?![A-Za-z_]+=\")"
        r"(?:(?=[A-Za-z]*[0-9._~+/=%-])[A-Za-z0-9._~+/=%-]{4,}|[A-Za-z]{20,})"
    ),
    # A JWT anywhere (header and payload are base64url JSON, so they start with `eyJ`).
    re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"),
    # `authorization: xyz`, `"password":"xyz"`, `token=xyz` in an echoed request or JSON.
    re.compile(
        r"""(?i)\b(authorization|password|passwd|secret|(?:access_|refresh_)?token)"""
        r"""(["']?\s*[:=]\s*["']?)(?!<redacted>)[^\s"',;&}]{2,}"""
    ),
)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove credentials from text a server sent back: known secrets, then anything that
    looks like one (an Authorization value, a JWT, `password=...`)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _SECRET_PATTERNS[1].sub(REDACTED, text)
    return _SECRET_PATTERNS[2].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what caused it (`__cause__`, else `__context__`, else an exception group's
    first member), at most 16 links, no loops.

    The group step matters for connection failures: trio reports a refused connect as
    `OSError("all attempts to connect ... failed")` caused by a group holding the real
    `ConnectionRefusedError`.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 16 and all(current is not c for c in chain):
        chain.append(current)
        nxt = current.__cause__ or current.__context__
        if nxt is None and isinstance(current, BaseExceptionGroup) and current.exceptions:
            nxt = current.exceptions[0]
        current = nxt
    return chain


def is_certificate_failure(exc: BaseException) -> bool:
    """The peer's certificate was refused (unknown CA, expired, wrong host): retrying the same
    request cannot help; the operator must fix the trust store or the URL."""
    return any(isinstance(link, ssl.SSLCertVerificationError) for link in exception_chain(exc))


def describe_cause(exc: BaseException) -> str:
    """The root cause of a transport failure, in words an operator can act on.

    httpx wraps httpcore wraps trio wraps `ssl`: the useful part ("unable to get local issuer
    certificate", "Hostname mismatch") sits several `__cause__`/`__context__` links down.
    """
    chain = exception_chain(exc)
    for link in chain:
        if isinstance(link, ssl.SSLCertVerificationError):
            return f"TLS certificate verify failed: {link.verify_message or link.reason}"
    for link in chain:
        if isinstance(link, ssl.SSLError):
            return f"TLS error: {link.reason or link.strerror or type(link).__name__}"
    for link in reversed(chain):
        if isinstance(link, OSError) and link.strerror:
            return f"{type(link).__name__}: {link.strerror}"
        if str(link):
            return f"{type(link).__name__}: {link}"
    return type(exc).__name__

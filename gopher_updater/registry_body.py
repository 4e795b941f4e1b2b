"""Bounded reading of registry answers: how many bytes, how deep, how big a number.

Why a module of its own: everything a registry or token server sends is untrusted, and the
stdlib parsers fail in ways that escape `except ValueError` (`RecursionError` on JSON nested a
few thousand levels, `OverflowError` on a 400-digit `expires_in`, a gzip bomb inflating 4 MiB
into gigabytes). Every body the client reads goes through `read_bounded` (called by the auth
flow, which sees every response first), and every JSON document through `loads_bounded`, so
those limits hold in one place whatever the caller.
"""

from __future__ import annotations

import json
import math
import re
import zlib

import httpx

#: distribution refuses manifests over 4 MiB (`maxManifestBodySize`); so do we.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: An error body is only read for its first error's code and message.
MAX_ERROR_BYTES = 64 * 1024
#: A token answer is a JWT or an opaque string plus a few numbers.
MAX_TOKEN_BYTES = 64 * 1024
#: Manifests nest about 4 levels, token answers 3; anything far deeper is hostile.
MAX_JSON_DEPTH = 64

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


class BodyTooLarge(Exception):
    """A success body over its cap; the client maps it to a typed RegistryError."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than {limit} bytes")
        self.limit = limit


class UnsupportedEncoding(Exception):
    """A success body in a Content-Encoding we cannot decode within bounds."""

    def __init__(self, encoding: str) -> None:
        super().__init__(f"answer in unsupported Content-Encoding {encoding[:40]!r}")
        self.encoding = encoding


def json_depth_ok(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if no bracket nests deeper than `limit` (strings ignored): checked before parsing."""
    depth = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", body)):
        depth += 1 if bracket in b"[{" else -1
        if depth > limit:
            return False
    return True


def loads_bounded(body: bytes, *, max_bytes: int = MAX_ERROR_BYTES) -> object | None:
    """`json.loads` that returns None for anything oversized, too deep or not JSON."""
    if len(body) > max_bytes or not json_depth_ok(body):
        return None
    try:
        return json.loads(body)  # type: ignore[no-any-return]
    except (ValueError, RecursionError, TypeError):
        return None


def bounded_number(value: object, *, low: float, high: float) -> float | None:
    """A finite number clamped to [low, high]; None for NaN, infinities, bools and non-numbers.

    Python ints are unbounded and `float(10**400)` raises OverflowError, so huge ints are
    clamped before any conversion.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, int):
        return float(min(max(value, math.floor(low)), math.ceil(high)))
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    if not math.isfinite(number):
        return None
    return min(max(number, low), high)


def _decode(raw: bytes, encoding: str, limit: int) -> bytes:
    """Undo gzip/deflate without ever producing more than `limit` + 1 bytes."""
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise UnsupportedEncoding(encoding)
    for wbits in (zlib.MAX_WBITS | 32, -zlib.MAX_WBITS):  # gzip/zlib header, then raw deflate
        try:
            return zlib.decompressobj(wbits).decompress(raw, limit + 1)
        except zlib.error:
            continue
    raise UnsupportedEncoding(encoding)


async def read_bounded(response: httpx.Response, limit: int, *, truncate: bool) -> None:
    """Read `response`'s body, at most `limit` bytes (after decoding), into `response.content`.

    `truncate`: keep the first `limit` bytes and drop the rest (error bodies: the status says
    what happened, the body only adds words); otherwise raise BodyTooLarge. The body is read
    from `response.stream` and replaced by the bounded bytes, with Content-Encoding removed,
    so httpx never decodes (or buffers) more than we allow.
    """
    stream = response.stream
    if not isinstance(stream, httpx.AsyncByteStream):  # a sync stream: nothing to bound here
        await response.aread()
        return
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in stream:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                if not truncate:
                    raise BodyTooLarge(limit)
                break
    finally:
        await stream.aclose()
    raw = b"".join(chunks)[: limit + 1]
    encoding = response.headers.get("content-encoding", "").strip().lower()
    try:
        body = _decode(raw, encoding, limit)
    except UnsupportedEncoding:
        if not truncate:
            raise
        body = b""
    if len(body) > limit:
        if not truncate:
            raise BodyTooLarge(limit)
        body = body[:limit]
    response.headers.pop("content-encoding", None)
    response.stream = httpx.ByteStream(body)
    await response.aread()

"""HTTP/1.1 on raw trio sockets with h11, with the socket-level misbehaviour tests need.

An ASGI server would hide exactly what the chain client must survive: a reset connection,
a body cut short under a full Content-Length, or a body trickled one byte at a time (which
no per-read socket timeout catches). Each connection serves requests one after another
(keep-alive, as httpx reuses connections) until the peer closes or an answer ends it.

Framing follows Go's net/http behind grpc-gateway: a body over 2048 bytes is written
before the handler returns, so it goes out chunked; smaller ones get a Content-Length.
"""

from __future__ import annotations

import email.utils
import http
import socket
import struct
from collections.abc import Awaitable, Callable

import attrs
import h11
import trio

#: Go's `bufferBeforeChunkingSize`: larger bodies are sent with Transfer-Encoding: chunked.
GO_CHUNKING_THRESHOLD = 2048
_RECEIVE_SIZE = 65536


@attrs.define
class RouteStats:
    """Requests seen and bytes written (status line, headers and body) for one route."""

    requests: int = 0
    bytes_out: int = 0


@attrs.frozen
class Request:
    method: str
    target: str


Header = tuple[str, str]


class Exchange:
    """The answer to one request on one connection.

    Every byte goes through `_write`, which charges it to `stats` (set by the handler once
    it knows the route), so faulted answers are counted like normal ones.
    """

    def __init__(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        self._stream = stream
        self._conn = conn
        self.stats: RouteStats | None = None
        #: True once the connection must not be reused (closed, reset or cut short).
        self.closed = False

    async def _write(self, data: bytes | None) -> None:
        if not data:
            return
        if self.stats is not None:
            self.stats.bytes_out += len(data)
        await self._stream.send_all(data)

    def _head(self, status: int, headers: list[Header], length: int | None) -> bytes | None:
        all_headers = [*headers, ("Date", email.utils.formatdate(usegmt=True))]
        if length is not None:
            all_headers.append(("Content-Length", str(length)))
        reason = http.HTTPStatus(status).phrase
        return self._conn.send(h11.Response(status_code=status, headers=all_headers, reason=reason))

    async def send(self, status: int, headers: list[Header], body: bytes) -> None:
        """A complete answer; Go-style framing (chunked above 2048 bytes)."""
        length = None if len(body) > GO_CHUNKING_THRESHOLD else len(body)
        data = self._head(status, headers, length) or b""
        data += self._conn.send(h11.Data(data=body)) or b""
        data += self._conn.send(h11.EndOfMessage()) or b""
        await self._write(data)

    async def send_truncated(self, status: int, headers: list[Header], body: bytes) -> None:
        """Announce the full Content-Length, send half of the body, close."""
        await self._write(self._head(status, headers, len(body)))
        await self._write(self._conn.send(h11.Data(data=body[: len(body) // 2])))
        await self.close()

    async def send_trickle(
        self, status: int, headers: list[Header], body: bytes, interval: float
    ) -> None:
        """Headers at once, then one body byte every `interval` seconds."""
        await self._write(self._head(status, headers, len(body)))
        for i in range(len(body)):
            await trio.sleep(interval)
            await self._write(self._conn.send(h11.Data(data=body[i : i + 1])))
        await self._write(self._conn.send(h11.EndOfMessage()))

    async def reset(self) -> None:
        """Abort with a TCP RST: SO_LINGER on with a zero timeout, then close."""
        self._stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.close()

    async def hang(self) -> None:
        """Never answer; return when the client goes away (EOF), so the task does not leak."""
        while await self._stream.receive_some(_RECEIVE_SIZE):
            pass
        await self.close()

    async def close(self) -> None:
        self.closed = True
        await self._stream.aclose()


Handler = Callable[[Request, Exchange], Awaitable[None]]


async def _next_request(stream: trio.SocketStream, conn: h11.Connection) -> Request | None:
    """Read one whole request (the body, if any, is discarded); None on a clean EOF."""
    request: Request | None = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(_RECEIVE_SIZE))
        elif isinstance(event, h11.Request):
            request = Request(method=event.method.decode(), target=event.target.decode())
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def serve_connection(stream: trio.SocketStream, handle: Handler) -> None:
    """Serve requests on `stream` until the peer leaves or an answer closes the connection."""
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request = await _next_request(stream, conn)
            if request is None:
                return
            exchange = Exchange(stream, conn)
            await handle(request, exchange)
            if exchange.closed or conn.our_state is not h11.DONE:
                return
            if conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except h11.RemoteProtocolError:
        pass  # not HTTP/1.1 we can parse: drop the connection, as a real node's proxy would
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()

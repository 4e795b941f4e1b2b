"""The ops app under Hypercorn's trio worker: the keep-alive trap and the crash path.

quart-trio cancels the ASGI `send()` in which Hypercorn does its connection bookkeeping; the
app wraps every send in a shielded scope (`ops.shield_send`). These tests talk raw HTTP/1.1
so they can see what a keep-alive client (Prometheus) sees.
"""

from __future__ import annotations

import socket
import time

import trio

from gopher_updater import ops
from gopher_updater.metrics import Metrics
from gopher_updater.state import Snapshot
from gopher_updater.testing.registry import RunningRegistry
from gopher_updater.testing.stack import daemon_env, free_port, spawn_daemon


async def _serve(nursery: trio.Nursery, shutdown: trio.Event) -> tuple[str, int]:
    app = ops.create_app(lambda: Snapshot.initial(60), Metrics(), pprof_enabled=False)
    urls = await nursery.start(ops.serve, app, "127.0.0.1", 0, shutdown)
    host, port = urls[0].removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def _read_response(stream: trio.SocketStream) -> bytes:
    """One HTTP/1.1 response with a Content-Length (what Hypercorn sends for these pages)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += await stream.receive_some(65536)
    return head + b"\r\n\r\n" + body


async def _read_until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_connection_close_is_honoured(nursery: trio.Nursery) -> None:
    shutdown = trio.Event()
    host, port = await _serve(nursery, shutdown)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    with trio.fail_after(2):  # without the shield the server never closes it
        data = await _read_until_closed(stream)
    assert data.startswith(b"HTTP/1.1 200")
    assert b"gopher_updater_build_info" in data
    shutdown.set()


async def test_keepalive_client_does_not_hold_up_shutdown(nursery: trio.Nursery) -> None:
    shutdown = trio.Event()
    host, port = await _serve(nursery, shutdown)
    stream = await trio.open_tcp_stream(host, port)
    for _ in range(3):  # a scraper: several requests on one connection
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(2):
            response = await _read_response(stream)
        assert response.startswith(b"HTTP/1.1 200") and response.endswith(b'{"status":"ok"}\n')
    started = trio.current_time()
    shutdown.set()
    with trio.fail_after(3):
        data = await _read_until_closed(stream)  # the server closes the idle connection
    assert data == b""
    assert trio.current_time() - started < 1.0


def test_a_crash_exits_non_zero_and_is_logged(registry_none: RunningRegistry) -> None:
    """A child that dies (here: the ops port is taken) ends the process with status 1."""
    with socket.socket() as taken:
        port = free_port()
        taken.bind(("127.0.0.1", port))
        taken.listen()
        # The crash comes before the chain matters; an unreachable LCD URL will do.
        env = daemon_env("http://127.0.0.1:9", registry_none, "me/node")
        proc, _ = spawn_daemon(env, port=port)
        start = time.monotonic()
        out, err = proc.communicate(timeout=15)
    logs = (out + err).decode()
    assert proc.returncode == 1, logs[-2000:]
    assert time.monotonic() - start < 10
    assert '"event": "crashed"' in logs
    assert "Address already in use" in logs

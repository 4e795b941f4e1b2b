"""The ops app under Hypercorn's trio worker: the keep-alive trap and the crash path.

quart-trio cancels the ASGI `send()` in which Hypercorn does its connection bookkeeping; the
app wraps every send in a shielded scope (`ops.shield_send`). These tests talk raw HTTP/1.1
so they can see what a keep-alive client (Prometheus) sees.
"""

from __future__ import annotations

import socket
import time
import tracemalloc
from collections.abc import Iterator

import pytest
import trio

from gopher_updater import ops
from gopher_updater.metrics import Metrics
from gopher_updater.state import State
from gopher_updater.testing.registry import RunningRegistry
from gopher_updater.testing.stack import daemon_env, free_port, spawn_daemon


async def _serve(nursery: trio.Nursery, shutdown: trio.Event) -> tuple[str, int]:
    app = ops.create_app(State(poll_interval=60), Metrics(), pprof_enabled=False)
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


def test_port_in_use_exits_with_one_line_naming_the_address(
    registry_none: RunningRegistry,
) -> None:
    """A taken HTTP_PORT is an operator error: one line with host and port, no dump.

    (This test used to assert the generic `crashed` event with the exception dump; issue 9
    makes this case read as the operator error it is.) The same run checks the `starting`
    line masks RPC_URL's userinfo.
    """
    with socket.socket() as taken:
        port = free_port()
        taken.bind(("127.0.0.1", port))
        taken.listen()
        # The failure comes before the chain matters; an unreachable LCD URL will do.
        env = daemon_env("http://lcd-user:rpc-s3cret@127.0.0.1:9", registry_none, "me/node")
        proc, _ = spawn_daemon(env, port=port)
        start = time.monotonic()
        out, err = proc.communicate(timeout=15)
    logs = (out + err).decode()
    assert proc.returncode == 1, logs[-2000:]
    assert time.monotonic() - start < 10
    lines = [line for line in logs.splitlines() if "cannot listen" in line]
    assert len(lines) == 1, logs[-2000:]
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in lines[0]
    assert "Traceback" not in logs and "ExceptionGroup" not in logs
    assert "crashed" not in logs
    starting = next(line for line in logs.splitlines() if '"event": "starting"' in line)
    assert '"rpc_url": "http://127.0.0.1:9"' in starting
    assert '"rpc_basic_auth": true' in starting
    assert "rpc-s3cret" not in logs and "lcd-user" not in logs


async def test_serve_raises_listen_error_for_a_taken_port(nursery: trio.Nursery) -> None:
    app = ops.create_app(State(poll_interval=60), Metrics(), pprof_enabled=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            await nursery.start(ops.serve, app, "127.0.0.1", port, trio.Event())
        except BaseException as exc:  # trio may wrap it in a group
            error = ops.find_error(exc, ops.ListenError)
        else:
            error = None
    assert error is not None
    assert (error.host, error.port, error.reason) == ("127.0.0.1", port, "address already in use")


# --- pprof: no query value gives a 500; tracing does not outlive the snapshot -------------


async def _pprof_get(path: str) -> tuple[int, str]:
    app = ops.create_app(State(poll_interval=60), Metrics(), pprof_enabled=True)
    response = await app.test_client().get("/debug/pprof" + path)
    return response.status_code, (await response.get_data()).decode()


@pytest.mark.parametrize(
    "query",
    [
        "heap?limit=abc",
        "heap?limit=-1",
        "heap?limit=0",
        "heap?limit=99999999999999999999",
        "heap?limit=1.5",
        "heap?keep=maybe",
        "heap?stop=2",
        "profile?seconds=abc",
        "profile?seconds=-1",
        "profile?seconds=0",
        "profile?seconds=nan",
        "profile?seconds=inf",
        "profile?seconds=1e400",
        "profile?seconds=86400",
        "profile?seconds=1&format=svg",
    ],
)
async def test_pprof_bad_query_values_are_400(query: str) -> None:
    tracing = tracemalloc.is_tracing()
    status, body = await _pprof_get("/" + query)
    assert status == 400, body
    last_parameter = query.rsplit("=", 1)[0].replace("?", "&").rsplit("&", 1)[1]
    assert last_parameter in body
    assert tracemalloc.is_tracing() == tracing


@pytest.fixture
def no_tracing() -> Iterator[None]:
    tracemalloc.stop()
    yield
    tracemalloc.stop()


@pytest.mark.usefixtures("no_tracing")
async def test_heap_snapshot_stops_tracing_unless_kept() -> None:
    status, body = await _pprof_get("/heap")
    assert (status, tracemalloc.is_tracing()) == (200, True)
    assert "started" in body
    status, body = await _pprof_get("/heap?limit=3")
    assert status == 200 and "traced: current" in body
    assert not tracemalloc.is_tracing()

    await _pprof_get("/heap")
    status, body = await _pprof_get("/heap?keep=1")
    assert status == 200 and "traced: current" in body
    assert tracemalloc.is_tracing()
    status, _ = await _pprof_get("/heap?stop=1")
    assert (status, tracemalloc.is_tracing()) == (200, False)

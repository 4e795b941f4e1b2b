"""Issue 9's acceptance points proved from the outside: the daemon and `check` as processes.

- `SOURCE_PREFIX=""` end to end: CI's bare `v1.2.3` is promoted to `mainnet-v1.2.3` at the
  halt, same digest (read back with skopeo, not from the daemon's own report).
- A TLS failure names its cause for the LCD as for the registry: the chain client's error,
  `/readyz`'s body, the logs and `check` output all say "certificate verify failed"; with
  `SSL_CERT_FILE` naming the private CA the same endpoints work.
- An unexpected crash inside the daemon exits 1 with one `crashed` event.
- Hostile environments (each alone, and all at once) exit 2 with one message naming every
  bad variable and no traceback, for `run` and `check` alike.
"""

from __future__ import annotations

import math
import os
import signal
import ssl
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gopher_updater import config
from gopher_updater.chain import ChainClient
from gopher_updater.chain_errors import ChainUnreachable
from gopher_updater.testing.chainsim import ChainSim
from gopher_updater.testing.registry import RunningRegistry
from gopher_updater.testing.registry_tls import TlsFiles
from gopher_updater.testing.stack import daemon_env, free_port, spawn_daemon, wait_http
from tests.test_daemon import run_chain_once_ready

VERIFY_FAILED = "TLS certificate verify failed: unable to get local issuer certificate"


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, (out + err).decode()


async def _get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(url)


# --- SOURCE_PREFIX="" end to end ----------------------------------------------------------


async def test_empty_source_prefix_promotes_the_bare_tag_at_the_halt(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_none
    source = reg.push_image(unique_repo, "v1.2.3", "oci-index")
    sim = ChainSim(height=100, block_time=math.inf)
    await nursery.start(sim.run)
    halt = sim.height + 8
    sim.schedule_plan("v1.2.3", halt)
    env = daemon_env(sim.url, reg, unique_repo, SOURCE_PREFIX="", POLL_INTERVAL="1s")
    assert env["SOURCE_PREFIX"] == ""  # set, and empty: not unset
    proc, url = spawn_daemon(env)
    try:
        await run_chain_once_ready(sim, url, 0.5)
        body = (await _get(url + "/status")).json()
        assert (body["source_tag"], body["target_tag"]) == ("v1.2.3", "mainnet-v1.2.3")
        while not sim.halted:  # nothing before H
            assert reg.head_digest(unique_repo, "mainnet-v1.2.3") is None, sim.height
            await trio.sleep(0.05)
        with trio.fail_after(5):
            # Polling on purpose: the state lives in other processes, there is no event.
            while reg.head_digest(unique_repo, "mainnet-v1.2.3") != source:  # noqa: ASYNC110
                await trio.sleep(0.05)
        promoted_after = trio.current_time() - sim.height_reached_at[halt]
        # The tag is visible before the retag's verifying HEAD returns and the worker logs.
        with trio.fail_after(5):
            while (await _get(url + "/status")).json()["last_promotion"] is None:  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert proc.poll() is None  # still running: no TypeError at the halt
    finally:
        code, logs = await trio.to_thread.run_sync(_stop, proc)
    assert promoted_after < 3.0
    assert reg.skopeo_digest(unique_repo, "mainnet-v1.2.3") == source
    assert code == 0, logs[-2000:]
    assert '"event": "promoted"' in logs
    assert "Traceback" not in logs


# --- TLS: the LCD's cause, /readyz, logs and `check` -------------------------------------


async def _pump(source: trio.abc.Stream, sink: trio.abc.Stream, done: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        done.cancel()


async def tls_lcd(nursery: trio.Nursery, sim: ChainSim, tls: TlsFiles) -> str:
    """The chain simulator behind a TLS terminator whose certificate the test's CA signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.certificate, tls.key)
    sim_port = httpx.URL(sim.url).port
    assert sim_port is not None

    async def handle(client: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", sim_port)
            async with upstream, client, trio.open_nursery() as pipes:
                pipes.start_soon(_pump, client, upstream, pipes.cancel_scope)
                pipes.start_soon(_pump, upstream, client, pipes.cancel_scope)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # a client refusing our certificate aborts the handshake: expected here

    serve = partial(trio.serve_ssl_over_tcp, handle, 0, context, host="127.0.0.1")
    listeners = await nursery.start(serve)
    return f"https://127.0.0.1:{listeners[0].transport_listener.socket.getsockname()[1]}"


async def test_lcd_behind_an_unknown_ca_names_the_verify_failure(
    nursery: trio.Nursery, tls_files: TlsFiles, no_ca_env: pytest.MonkeyPatch
) -> None:
    sim = ChainSim(height=100, block_time=math.inf)
    await nursery.start(sim.run)
    url = await tls_lcd(nursery, sim, tls_files)
    async with ChainClient(url, timeout=2.0) as chain:
        with pytest.raises(ChainUnreachable) as info:
            await chain.current_plan()
    assert f"connection failed: {VERIFY_FAILED}" in str(info.value)
    assert "127.0.0.1" in str(info.value)  # which LCD

    no_ca_env.setenv("SSL_CERT_FILE", str(tls_files.ca))  # read when a client is built
    async with ChainClient(url, timeout=2.0) as chain:
        answer = await chain.current_plan()
        height = await chain.latest_height()
    assert answer.plan is None and height.block == 100


async def test_lcd_hostname_mismatch_names_it(
    nursery: trio.Nursery, tls_files: TlsFiles, no_ca_env: pytest.MonkeyPatch
) -> None:
    sim = ChainSim(height=100, block_time=math.inf)
    await nursery.start(sim.run)
    url = (await tls_lcd(nursery, sim, tls_files)).replace("127.0.0.1", "localhost")
    no_ca_env.setenv("SSL_CERT_FILE", str(tls_files.ca))
    async with ChainClient(url, timeout=2.0) as chain:
        with pytest.raises(ChainUnreachable, match="TLS certificate verify failed: Hostname"):
            await chain.current_plan()


async def test_connection_refused_says_so() -> None:
    async with ChainClient("http://127.0.0.1:9", timeout=2.0) as chain:
        with pytest.raises(ChainUnreachable) as info:
            await chain.current_plan()
    assert "Connection refused" in str(info.value), str(info.value)
    assert "ExceptionGroup" not in str(info.value)


def _check(env: dict[str, str]) -> tuple[int, str, str]:
    proc, _ = spawn_daemon(env, "check")
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out.decode(), err.decode()


async def test_readyz_logs_and_check_show_the_tls_cause(
    nursery: trio.Nursery,
    registry_tls: RunningRegistry,
    tls_files: TlsFiles,
    no_ca_env: pytest.MonkeyPatch,
) -> None:
    """Registry and LCD both behind the test's private CA: without `SSL_CERT_FILE` every
    surface an operator reads names the verify failure; with it, `check` is all good."""
    sim = ChainSim(height=100, block_time=math.inf)
    await nursery.start(sim.run)
    lcd = await tls_lcd(nursery, sim, tls_files)
    env = daemon_env(lcd, registry_tls, "me/tls", POLL_INTERVAL="1s", REQUEST_TIMEOUT="2s")

    proc, url = spawn_daemon(env)
    try:
        await trio.to_thread.run_sync(lambda: wait_http(url + "/healthz", status=200))
        with trio.fail_after(10):
            while True:
                response = await _get(url + "/readyz")
                checks = response.json()["checks"]
                errors = [checks[name]["last_error"] or "" for name in ("chain", "registry")]
                if all("certificate verify failed" in e for e in errors):
                    break
                await trio.sleep(0.1)
        assert response.status_code == 503
    finally:
        code, logs = await trio.to_thread.run_sync(_stop, proc)
    chain_error, registry_error = errors
    assert f"connection failed: {VERIFY_FAILED}" in chain_error
    assert f"connection failed: {VERIFY_FAILED}" in registry_error
    assert "ConnectError: " not in chain_error + registry_error
    assert code == 0, logs[-2000:]
    assert logs.count("certificate verify failed") >= 2  # the poll's and the registry's
    assert "Traceback" not in logs

    code, out, err = await trio.to_thread.run_sync(_check, env)
    assert code == 1
    chain_line = next(line for line in out.splitlines() if f"chain {lcd}" in line)
    registry_line = next(line for line in out.splitlines() if "registry https://" in line)
    assert chain_line.startswith("[FAIL]") and VERIFY_FAILED in chain_line
    assert registry_line.startswith("[FAIL]") and VERIFY_FAILED in registry_line
    assert "Traceback" not in err

    no_ca_env.setenv("SSL_CERT_FILE", str(tls_files.ca))  # spawn_daemon passes it on
    code, out, err = await trio.to_thread.run_sync(_check, env)
    assert code == 0, out + err
    assert f"[ok  ] chain {lcd}: height 100" in out
    assert "credentials accepted with push scope" in out and "all good" in out


# --- an unexpected crash ------------------------------------------------------------------

_CRASHING_DAEMON = """
import sys
from gopher_updater import cli, preflight

async def boom(self, *, task_status):
    task_status.started()
    raise RuntimeError("unexpected: something nobody planned for")

preflight.RegistryWatch.run = boom  # a task of the daemon crashes after start-up
sys.exit(cli.main(["run"]))
"""


def test_an_unexpected_crash_exits_1_with_one_crashed_event(
    registry_none: RunningRegistry,
) -> None:
    """The generic crash path (not the port-in-use operator error): one `crashed` event
    carrying the exception, exit 1, and the ops server does not hold the process up."""
    env = daemon_env("http://127.0.0.1:9", registry_none, "me/node", HTTP_PORT=str(free_port()))
    full = {k: v for k, v in os.environ.items() if k not in config.ENV_VARS}
    full.update(env)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _CRASHING_DAEMON],
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
    )
    elapsed = time.monotonic() - start
    logs = proc.stdout + proc.stderr
    assert proc.returncode == 1, logs[-2000:]
    assert elapsed < 10
    crashed = [line for line in logs.splitlines() if '"event": "crashed"' in line]
    assert len(crashed) == 1, logs[-3000:]
    assert "RuntimeError: unexpected: something nobody planned for" in crashed[0]
    assert "cannot listen" not in logs
    assert registry_none.password not in logs


# --- hostile environments: exit 2, one message, no traceback -----------------------------


def _hostile(tmp: Path) -> dict[str, dict[str, str]]:
    """Each hostile value of issue 9, by the variable(s) it must be reported under."""
    fifo = tmp / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    directory = tmp / "dir"
    directory.mkdir(exist_ok=True)
    latin1 = tmp / "latin1"
    latin1.write_bytes(b"p\xe4ssword\n")
    return {
        "HTTP_HOST": {"HTTP_HOST": "not a host!"},
        "REPO_PATH": {"REPO_PATH": "me/" + "n" * 100_000},
        "REGISTRY_URL": {"REGISTRY_URL": "https://user:S3CRET-pw@registry.example"},
        "RPC_URL": {"RPC_URL": "http://lcd.example:99999"},
        "FLUX_RECEIVER_URL": {"FLUX_RECEIVER_URL": "https://flux.example/" + "a" * 5000},
        "DOCKERHUB_PASSWORD_FILE": {"DOCKERHUB_PASSWORD_FILE": str(fifo)},
        "NOTIFY_URLS_FILE": {"NOTIFY_URLS_FILE": str(directory)},
        "NOTIFY_WEBHOOK_TOKEN_FILE": {"NOTIFY_WEBHOOK_TOKEN_FILE": str(latin1)},
        "POLL_INTERVAL": {"POLL_INTERVAL": "1ns"},
        "REQUEST_TIMEOUT": {"REQUEST_TIMEOUT": "-5s"},
        "HTTP_PORT": {"HTTP_PORT": "99999"},
    }


BASE = {
    "DOCKERHUB_USER": "me",
    "DOCKERHUB_PASSWORD": "hunter2-very-secret",
    "REPO_PATH": "me/node",
    "TARGET_PREFIX": "mainnet-",
}


def _run_cli(env: dict[str, str], command: str) -> tuple[subprocess.CompletedProcess[str], float]:
    clean = {k: v for k, v in os.environ.items() if k not in config.ENV_VARS}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "gopher_updater", command],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=20,  # a FIFO must not hang start-up
    )
    return proc, time.monotonic() - start


def _assert_refused(proc: subprocess.CompletedProcess[str], names: list[str]) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert "Traceback" not in out and "Error:" not in out.split("invalid configuration")[0]
    assert proc.stderr.count("invalid configuration") == 1, proc.stderr[-2000:]
    listed = [line for line in proc.stderr.splitlines() if line.startswith("  - ")]
    for name in names:
        assert any(line.startswith(f"  - {name}:") for line in listed), (name, listed)
    assert "S3CRET" not in out and "hunter2" not in out
    assert len(out) < 20_000  # a 100,000-character value is not echoed back


@pytest.mark.parametrize("command", ["run", "check"])
def test_each_hostile_value_alone_exits_2_without_a_traceback(tmp_path: Path, command: str) -> None:
    for name, values in _hostile(tmp_path).items():
        env = dict(BASE)
        if name == "DOCKERHUB_PASSWORD_FILE":
            del env["DOCKERHUB_PASSWORD"]
        proc, elapsed = _run_cli({**env, **values}, command)
        _assert_refused(proc, [name])
        assert elapsed < 10, name


@pytest.mark.parametrize("command", ["run", "check"])
def test_all_hostile_values_at_once_are_one_message_naming_each(
    tmp_path: Path, command: str
) -> None:
    hostile = _hostile(tmp_path)
    env: dict[str, Any] = {k: v for k, v in BASE.items() if k != "DOCKERHUB_PASSWORD"}
    for values in hostile.values():
        env.update(values)
    proc, elapsed = _run_cli(env, command)
    _assert_refused(proc, list(hostile))
    assert elapsed < 10

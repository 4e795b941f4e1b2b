"""End to end after the retag: the Flux nudge and the upgrade's timeline (issue 11).

The daemon runs as a real process (`LOG_LEVEL=debug`, output to a file) against the chain
simulator (which restarts on the new binary `upgrade_after` seconds after the halt), a real
registry and Flux Receiver simulators; every fact is read where it lands: the Receiver's
recorded calls, the registry's (or a proxy's) request log, /status, /metrics and the log.
One daemon per scenario, several assertions each, to keep the suite fast.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gopher_updater.testing.fluxsim import Call, FluxSim, ObjectKey, Resource, SimReceiver
from gopher_updater.testing.registry import FaultProxy, RunningRegistry
from gopher_updater.testing.stack import daemon_env, spawn_daemon, start_daemon, wait_http
from tests.test_alerts import run_promtool
from tests.test_daemon import (
    get_json,
    metric,
    metrics_text,
    run_chain_once_ready,
    start_sim,
    wait_until,
)

TOKEN = b"s3cr3t-token"
NS = "flux-system"
IMAGE_REPO = ObjectKey("image.toolkit.fluxcd.io/v1", "ImageRepository", NS, "node")
RESOURCES = (Resource("ImageRepository", "node"),)
#: Target 1 s (README, Performance); the slack is for a loaded 2-core CI machine.
FIRST_NUDGE_WITHIN = 1.25


@pytest.fixture
def receivers() -> Iterator[tuple[FluxSim, FluxSim]]:
    """`good` (signed, accepts) and `bad` (another Secret: our signature -> 400) on one
    controller; `flaky` (signed) on another, told to answer 503 three times first."""
    main = FluxSim(
        [
            SimReceiver("good", NS, TOKEN, resources=RESOURCES),
            SimReceiver("bad", NS, b"another-token", resources=RESOURCES),
        ],
        objects=[IMAGE_REPO],
    )
    flaky = FluxSim([SimReceiver("flaky", NS, TOKEN, resources=RESOURCES)], objects=[IMAGE_REPO])
    with main, flaky:
        yield main, flaky


def on(sim: FluxSim, name: str) -> list[Call]:
    path = sim.webhook_path_of(name)
    return [c for c in sim.calls() if c.raw_uri == path]


async def status(url: str) -> dict[str, Any]:
    _, body = await get_json(url + "/status")
    return body  # type: ignore[no-any-return]


async def upgrade_state(url: str) -> str | None:
    upgrade = (await status(url))["upgrade"]
    return None if upgrade is None else upgrade["state"]  # type: ignore[no-any-return]


async def state_is(url: str, state: str) -> bool:
    return await upgrade_state(url) == state


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=10)


def mono_offset() -> float:
    """time.monotonic() - trio.current_time(): the Receiver records monotonic times."""
    return time.monotonic() - trio.current_time()


async def test_halt_nudge_and_follow_to_resumed(
    nursery: trio.Nursery,
    registry_token: RunningRegistry,
    unique_repo: str,
    receivers: tuple[FluxSim, FluxSim],
    tmp_path: Path,
) -> None:
    reg, (main, flaky) = registry_token, receivers
    source = reg.push_image(unique_repo, "release-v2")
    flaky.force(503, times=3)
    sim = await start_sim(nursery, height=100, block_time=math.inf, upgrade_after=4.0)
    halt = sim.height + 4
    sim.schedule_plan("v2", halt)
    urls = [main.url("good"), flaky.url("flaky"), main.url("bad")]
    env = daemon_env(
        sim.url,
        reg,
        unique_repo,
        LOG_LEVEL="debug",
        FLUX_RECEIVER_URL=",".join(urls),
        FLUX_RECEIVER_TOKEN=TOKEN.decode(),
        UPGRADE_STUCK_AFTER="1m",
    )
    log = tmp_path / "daemon.log"
    proc, url = spawn_daemon(env, log=log)
    try:
        await run_chain_once_ready(sim, url, 1.0)
        offset = mono_offset()
        await sim.wait_until(lambda s: s.halted)
        h_seen = sim.height_reached_at[halt] + offset

        # The first nudge: within a second of block H, signed, the promotion's event.
        await wait_until(lambda: _true(bool(on(main, "good"))), within=5)
        first = on(main, "good")[0]
        assert first.at - h_seen <= FIRST_NUDGE_WITHIN, f"{first.at - h_seen:.2f}s after H"
        assert first.status == 200 and first.verdict == "accepted"
        assert first.header("Content-Type") == "application/json"
        event = json.loads(first.body)
        assert event == {
            "type": "promoted",
            "chain_id": "test",
            "plan": "v2",
            "height": halt,
            "repository": unique_repo,
            "target_tag": "mainnet-v2",
            "digest": source,
            "at": event["at"],
        }
        assert abs(event["at"] - time.time()) < 5
        assert main.annotations[IMAGE_REPO], "the Receiver annotated the ImageRepository"

        # The timeline to the end: the new binary applies the plan, blocks resume.
        await wait_until(lambda: state_is(url, "resumed"), within=15)
        upgrade = (await status(url))["upgrade"]
        states = [e["state"] for e in upgrade["events"]]
        assert states == ["halted", "promoted", "nudged", "node_upgraded", "resumed"]
        assert (upgrade["plan"], upgrade["height"]) == ("v2", halt)
        chain_halt = sim.height_reached_at[halt + 1] - sim.height_reached_at[halt]
        assert abs(upgrade["halt_duration_seconds"] - chain_halt) < 1.0, (upgrade, chain_halt)
        assert 0 < upgrade["promotion_delay_seconds"] < FIRST_NUDGE_WITHIN
        at = dict(zip(states, (e["at"] for e in upgrade["events"]), strict=True))
        assert at["halted"] <= at["promoted"] <= at["nudged"] <= at["resumed"]

        # The repeats (+10 s), the retried 503s, the 400 reported once and never retried.
        await trio.sleep(max(0.0, h_seen + 11.5 - time.monotonic()))
        good, retried, bad = on(main, "good"), flaky.calls(), on(main, "bad")
        assert [c.status for c in good][:2] == [200, 200], good
        assert 9 <= good[1].at - good[0].at <= 11
        assert [c.status for c in retried][:4] == [503, 503, 503, 200], retried
        assert [c.verdict for c in bad] == ["bad_signature"], bad
        flux = (await status(url))["flux"]
        by_index = {r["index"]: r for r in flux["receivers"]}
        assert by_index[3]["outcome"] == "rejected" and by_index[3]["finished"] is True
        assert by_index[2]["accepted"] >= 1 and by_index[2]["attempts"] >= 4
        assert flux["delay_seconds"] is not None and flux["delay_seconds"] <= FIRST_NUDGE_WITHIN

        text = await metrics_text(url)
        assert metric(text, "gopher_updater_flux_nudges_total", outcome="rejected") == 1
        assert metric(text, "gopher_updater_flux_nudges_total", outcome="retry") == 3
        assert metric(text, "gopher_updater_flux_nudges_total", outcome="accepted") >= 3
        assert metric(text, "gopher_updater_upgrade_state", state="resumed") == 1
        assert metric(text, "gopher_updater_upgrade_state", state="stuck") == 0
        assert metric(text, "gopher_updater_upgrade_halt_duration_seconds") > 0
        assert metric(text, "gopher_updater_promotion_delay_seconds") > 0
        assert metric(text, "gopher_updater_ready") == 1
        assert metric(text, "gopher_updater_problem", kind="conflict") == 0

        # A live page passes promtool's lint: no errors, nothing about our names.
        result = await trio.to_thread.run_sync(
            lambda: run_promtool("check", "metrics", stdin=text.encode())
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "gopher_updater" not in result.stdout + result.stderr

        pages = {p: await _text(url + p) for p in ("/status", "/readyz", "/metrics")}
    finally:
        code = stop(proc)
    assert code == 0
    logged = log.read_text()
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert any(line.get("level") == "debug" for line in lines), "LOG_LEVEL=debug took effect"
    for state in ("halted", "promoted", "nudged", "node_upgraded", "resumed"):
        assert events.count(f"upgrade_{state}") == 1, state
    assert events.count("flux_nudge_rejected") == 1
    # No Receiver URL path, no token: not in the log, not on any page.
    secrets = [TOKEN.decode(), *(u.split("/hook/")[1] for u in urls), "/hook/"]
    for where, text in {"log": logged, **pages}.items():
        for secret in secrets:
            assert secret not in text, (where, secret)


async def test_stuck_then_resumed_and_a_restart_repeats_nothing(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str, tmp_path: Path
) -> None:
    reg = registry_none
    reg.push_image(unique_repo, "release-v3")
    sim = await start_sim(nursery, height=100, block_time=1.0, upgrade_after=None)
    halt = sim.height + 2
    sim.schedule_plan("v3", halt)
    log = tmp_path / "daemon.log"
    with FaultProxy(reg.url) as proxy:
        env = daemon_env(sim.url, reg, unique_repo, UPGRADE_STUCK_AFTER="3s")
        env["REGISTRY_URL"] = proxy.url
        proc, url = spawn_daemon(env, log=log)
        try:
            await trio.to_thread.run_sync(lambda: wait_http(url + "/healthz"))
            await sim.wait_until(lambda s: s.halted)
            await wait_until(lambda: state_is(url, "promoted"), within=5)
            await wait_until(lambda: state_is(url, "stuck"), within=6)
            text = await metrics_text(url)
            assert metric(text, "gopher_updater_upgrade_state", state="stuck") == 1
            assert metric(text, "gopher_updater_upgrade_state", state="promoted") == 0
        finally:
            assert stop(proc) == 0
        puts = [r for r in proxy.log if r.method == "PUT"]
        requests = len(proxy.log)
        assert len(puts) == 1

        # Restarted mid-timeline: the chain still halted, the target already promoted.
        proc, url = spawn_daemon(env, log=log)
        try:
            await trio.to_thread.run_sync(lambda: wait_http(url + "/healthz"))
            # Block H's own time is the halt, so the new daemon is stuck at once.
            await wait_until(lambda: state_is(url, "stuck"), within=6)
            body = await status(url)
            assert body["last_promotion"]["outcome"] == "already_promoted"
            assert body["upgrade"]["outcome"] == "already_promoted"
            sim.upgrade_after = 0.5  # the new binary starts at last
            await wait_until(lambda: state_is(url, "resumed"), within=8)
            upgrade = (await status(url))["upgrade"]
            states = [e["state"] for e in upgrade["events"]]
            # Stuck may come before the (re-)promotion settles: block H is long past.
            assert states[0] == "halted" and states[-2:] == ["node_upgraded", "resumed"]
            assert sorted(states[1:3]) == ["promoted", "stuck"], states
            # Halted from block H's own time; the resume read at the stuck cadence (5 s).
            chain_halt = sim.height_reached_at[halt + 1] - sim.height_reached_at[halt]
            assert chain_halt - 1 < upgrade["halt_duration_seconds"] < chain_halt + 6, (
                upgrade,
                chain_halt,
            )
            assert upgrade["promotion_delay_seconds"] is None  # not written by this process
            text = await metrics_text(url)
            assert metric(text, "gopher_updater_upgrade_state", state="stuck") == 0
            assert metric(text, "gopher_updater_upgrade_state", state="resumed") == 1
        finally:
            assert stop(proc) == 0
    # The restart re-checked (credentials, preflight, the retag's HEADs) and wrote nothing.
    assert [r for r in proxy.log if r.method == "PUT"] == puts
    assert {r.method for r in proxy.log[requests:]} <= {"GET", "HEAD"}
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events.count("upgrade_stuck") == 2  # once per process
    assert "upgrade_nudged" not in events  # no receiver, no nudged


async def test_dry_run_nudges_nobody(
    nursery: trio.Nursery,
    registry_none: RunningRegistry,
    unique_repo: str,
    receivers: tuple[FluxSim, FluxSim],
) -> None:
    reg, (main, _) = registry_none, receivers
    reg.push_image(unique_repo, "release-v4")
    sim = await start_sim(nursery, height=100, block_time=math.inf)
    sim.schedule_plan("v4", 101)
    sim.advance(3)
    env = daemon_env(
        sim.url,
        reg,
        unique_repo,
        DRY_RUN="true",
        FLUX_RECEIVER_URL=main.url("good"),
        FLUX_RECEIVER_TOKEN=TOKEN.decode(),
    )
    d = await start_daemon(nursery, env)
    await wait_until(lambda: state_is(d.url, "promoted"), within=5)
    body = await status(d.url)
    assert body["last_promotion"]["outcome"] == "would_promote"
    assert body["upgrade"]["outcome"] == "would_promote"
    assert [r["outcome"] for r in body["flux"]["receivers"]] == ["dry_run"]
    await trio.sleep(1.0)
    assert main.calls() == ()
    text = await metrics_text(d.url)
    assert metric(text, "gopher_updater_flux_nudges_total", outcome="dry_run") == 1
    assert metric(text, "gopher_updater_flux_nudges_total", outcome="accepted") == 0
    d.stop()


async def _true(value: bool) -> bool:
    return value


async def _text(url: str) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(url, timeout=5)).text

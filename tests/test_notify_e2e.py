"""End to end, notifications (issue 12): the daemon as a process, the chain simulator, a real
registry, a Flux Receiver simulator and the notification sink behind both channels (the
webhook, and Apprise's `json://`). What the team hears is read where it lands: the sink.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gopher_updater.daemon import NOTIFY_DRAIN
from gopher_updater.testing.fluxsim import FluxSim
from gopher_updater.testing.notifysink import NotifySink, Post
from gopher_updater.testing.registry import RunningRegistry
from gopher_updater.testing.stack import daemon_env, spawn_daemon, start_daemon
from tests.test_after_retag import FIRST_NUDGE_WITHIN, mono_offset, state_is, status, stop
from tests.test_config import BASE
from tests.test_config import _cli as cli
from tests.test_daemon import (
    head,
    metric,
    metrics_text,
    run_chain_once_ready,
    start_sim,
    wait_until,
)

KEY = "n0tify-hmac-k3y"
HOOK = "/notify/h00k-p4th-s3cret"
APPRISE = "/apprise/appr1se-p4th-s3cret"
FLUX_TOKEN = b"flux-t0ken-s3cret"
NS = "flux-system"
TIMELINE = ["scheduled", "halted", "promoted", "nudged", "node_upgraded", "resumed"]


@pytest.fixture
def sink() -> Iterator[NotifySink]:
    with NotifySink(key=KEY.encode()) as s:  # Apprise posts unsigned
        yield s


@pytest.fixture
def flux() -> Iterator[FluxSim]:
    with FluxSim.for_image_repository(FLUX_TOKEN, name="node", namespace=NS) as sim:
        yield sim


def notify_env(sink: NotifySink, **more: str) -> dict[str, str]:
    return {
        "NOTIFY_WEBHOOK_URL": sink.url + HOOK,
        "NOTIFY_WEBHOOK_TOKEN": KEY,
        "NOTIFY_URLS": sink.apprise_url(APPRISE),
        **more,
    }


def types(posts: list[Post]) -> list[str]:
    return [p.json()["type"] for p in posts]


async def posts(sink: NotifySink, path: str, count: int, within: float) -> list[Post]:
    return await trio.to_thread.run_sync(lambda: sink.wait_for(count, within, path))


async def test_the_whole_upgrade_told_once_in_order_through_both_channels(
    nursery: trio.Nursery,
    registry_token: RunningRegistry,
    unique_repo: str,
    sink: NotifySink,
    flux: FluxSim,
    tmp_path: Path,
) -> None:
    reg = registry_token
    source = reg.push_image(unique_repo, "release-v2")
    sim = await start_sim(nursery, height=100, block_time=math.inf, upgrade_after=3.0)
    halt = sim.height + 8
    sim.schedule_plan("v2", halt)
    env = daemon_env(
        sim.url,
        reg,
        unique_repo,
        LOG_LEVEL="debug",
        FLUX_RECEIVER_URL=flux.url("node"),
        FLUX_RECEIVER_TOKEN=FLUX_TOKEN.decode(),
        **notify_env(sink),
    )
    log = tmp_path / "daemon.log"
    proc, url = spawn_daemon(env, log=log)
    try:
        await run_chain_once_ready(sim, url, 1.0)
        await posts(sink, HOOK, 1, within=6)  # scheduled
        assert sim.height < halt, "scheduled arrives before the halt"
        await wait_until(lambda: state_is(url, "resumed"), within=20)
        hooks = await posts(sink, HOOK, len(TIMELINE), within=10)
        apprise = await posts(sink, APPRISE, len(TIMELINE), within=10)
        await trio.sleep(1.5)  # nothing more comes
        pages = {p: await _text(url + p) for p in ("/status", "/readyz", "/metrics")}
        notifications = (await status(url))["notifications"]
    finally:
        assert stop(proc) == 0

    hooks, apprise = sink.posts_to(HOOK), sink.posts_to(APPRISE)
    assert types(hooks) == TIMELINE, types(hooks)
    assert all(p.status == 200 and p.signature_ok for p in hooks)
    bodies = [p.json() for p in hooks]
    assert len({b["id"] for b in bodies}) == len(TIMELINE)
    assert {(b["chain_id"], b["plan"], b["height"]) for b in bodies} == {("test", "v2", halt)}
    by_type = {b["type"]: b for b in bodies}
    first = by_type["scheduled"]
    assert first["source_present"] is True and first["source_tag"] == "release-v2"
    # 8 blocks of 1 s, learned from rises each seen up to one read (1 s) late: 0-2 s a block.
    assert 0 < first["eta_seconds"] <= 8 * 2, {k: first[k] for k in ("eta_seconds", "text")}
    promoted = by_type["promoted"]
    assert (promoted["target_tag"], promoted["digest"]) == ("mainnet-v2", source)
    assert 0 < promoted["delay_seconds"] < FIRST_NUDGE_WITHIN
    assert by_type["resumed"]["halt_duration_seconds"] > 2
    assert by_type["nudged"]["delay_seconds"] is not None
    assert [b["at"] for b in bodies] == sorted(b["at"] for b in bodies)
    # Apprise: the same lines, in the same order, titled with the chain id.
    assert [p.json()["message"] for p in apprise] == [b["text"] for b in bodies]
    assert all(p.json()["title"] == "gopher-updater: test" for p in apprise)

    # /status shows both services (scheme or host only); readiness is not theirs.
    channels = {c["name"]: c for c in notifications["channels"]}
    assert set(channels) == {"webhook", "apprise:json"}
    assert all(c["counts"]["sent"] == len(TIMELINE) for c in channels.values())
    assert notifications["failing"] is False
    assert "notifications" not in pages["/readyz"]
    text = pages["/metrics"]
    for kind in TIMELINE:
        labels = {"channel": "webhook", "event": kind, "outcome": "sent"}
        assert metric(text, "gopher_updater_notifications_total", **labels) == 1, kind

    # No URL path, token or key anywhere, at LOG_LEVEL=debug.
    logged = log.read_text()
    assert '"level": "debug"' in logged or '"level":"debug"' in logged
    for where, body in {"log": logged, **pages}.items():
        for secret in (HOOK, APPRISE, KEY, FLUX_TOKEN.decode(), HOOK[8:], APPRISE[9:]):
            assert secret not in body, (where, secret)


async def test_a_hanging_sink_moves_no_promotion_and_events_filter(
    nursery: trio.Nursery,
    registry_token: RunningRegistry,
    unique_repo: str,
    sink: NotifySink,
    flux: FluxSim,
    tmp_path: Path,
) -> None:
    reg = registry_token
    source = reg.push_image(unique_repo, "release-v3")
    sink.hang_all(30.0)  # every service hangs: each try times out (REQUEST_TIMEOUT=2s)
    sim = await start_sim(nursery, height=100, block_time=math.inf, upgrade_after=2.0)
    halt = sim.height + 6
    sim.schedule_plan("v3", halt)
    env = daemon_env(
        sim.url,
        reg,
        unique_repo,
        FLUX_RECEIVER_URL=flux.url("node"),
        FLUX_RECEIVER_TOKEN=FLUX_TOKEN.decode(),
        **notify_env(sink, NOTIFY_EVENTS="Promoted resumed"),
    )
    proc, url = spawn_daemon(env, log=tmp_path / "daemon.log")
    try:
        await run_chain_once_ready(sim, url, 1.0)
        offset = mono_offset()
        await sim.wait_until(lambda s: s.halted)
        target_at = await wait_until(
            lambda: _equals(head(reg, unique_repo, "mainnet-v3"), source), within=5, every=0.02
        )
        latency = target_at - sim.height_reached_at[halt]
        assert latency < FIRST_NUDGE_WITHIN, f"promoted {latency:.2f}s after H with a hung sink"
        await wait_until(lambda: _true(bool(flux.calls())), within=5)
        nudge = flux.calls()[0].at - (sim.height_reached_at[halt] + offset)
        assert nudge < FIRST_NUDGE_WITHIN, f"nudged {nudge:.2f}s after H with a hung sink"
        await wait_until(lambda: state_is(url, "resumed"), within=15)
        assert sink.in_flight >= 1, "the sink really was hanging"
        sink.hang_all(0)  # the service recovers: the retries deliver
        hooks = await posts(sink, HOOK, 2, within=40)
        apprise = await posts(sink, APPRISE, 2, within=40)
        text = await metrics_text(url)
        notifications = (await status(url))["notifications"]
    finally:
        assert stop(proc) == 0
    assert types(hooks) == ["promoted", "resumed"], types(hooks)
    assert [p.json()["message"][:12] for p in apprise] == [p.json()["text"][:12] for p in hooks]
    assert notifications["events"] == ["promoted", "resumed"]
    assert notifications["filtered"] >= 3  # scheduled, halted, nudged, node_upgraded
    labels = {"channel": "webhook", "event": "promoted"}
    assert metric(text, "gopher_updater_notifications_total", outcome="retry", **labels) >= 1


async def test_rescheduled_cancelled_and_moved_source_once_each(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str, sink: NotifySink
) -> None:
    reg = registry_none
    reg.push_image(unique_repo, "release-v4")
    first = reg.push_image(unique_repo, "release-v5")
    sim = await start_sim(nursery, height=100, block_time=1.0)
    at = sim.height + 100
    sim.schedule_plan("v4", at)
    env = daemon_env(
        sim.url, reg, unique_repo, POLL_INTERVAL="1s", **notify_env(sink, NOTIFY_URLS="")
    )
    d = await start_daemon(nursery, env)
    await posts(sink, HOOK, 1, within=12)  # scheduled v4
    later = sim.height + 200
    sim.schedule_plan("v4", later)
    await posts(sink, HOOK, 2, within=5)  # rescheduled
    sim.cancel_plan()
    await posts(sink, HOOK, 3, within=5)  # cancelled

    halt = sim.height + 8
    sim.schedule_plan("v5", halt)
    await posts(sink, HOOK, 4, within=12)  # scheduled v5: preflight saw `first`
    moved = reg.push_image(unique_repo, "release-v5")  # CI pushes again before H
    await sim.wait_until(lambda s: s.halted)
    await wait_until(lambda: _equals(head(reg, unique_repo, "mainnet-v5"), moved), within=5)
    await posts(sink, HOOK, 7, within=5)
    await trio.sleep(1.0)
    d.stop()
    bodies = [p.json() for p in sink.posts_to(HOOK)]
    assert [(b["type"], b["plan"]) for b in bodies] == [
        ("scheduled", "v4"),
        ("rescheduled", "v4"),
        ("cancelled", "v4"),
        ("scheduled", "v5"),
        ("halted", "v5"),
        ("source_moved", "v5"),
        ("promoted", "v5"),
    ]
    rescheduled, cancelled = bodies[1], bodies[2]
    assert (rescheduled["previous_height"], rescheduled["height"]) == (at, later)
    assert cancelled["height"] == later and bodies[0]["height"] == at
    source_moved, promoted = bodies[5], bodies[6]
    assert (source_moved["previous_digest"], source_moved["digest"]) == (first, moved)
    assert promoted["digest"] == moved
    assert all(p.signature_ok for p in sink.posts_to(HOOK))


async def test_a_restart_after_the_promotion_repeats_nothing_and_tells_the_resume(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str, sink: NotifySink
) -> None:
    reg = registry_none
    reg.push_image(unique_repo, "release-v6")
    sim = await start_sim(nursery, height=100, block_time=1.0, upgrade_after=None)
    halt = sim.height + 2
    sim.schedule_plan("v6", halt)
    env = daemon_env(sim.url, reg, unique_repo, **notify_env(sink, NOTIFY_URLS=""))
    d = await start_daemon(nursery, env)
    await sim.wait_until(lambda s: s.halted)
    await wait_until(lambda: _true("promoted" in types(sink.posts_to(HOOK))), within=8)
    told = sink.posts_to(HOOK)
    assert types(told)[-2:] == ["halted", "promoted"], types(told)
    d.stop()
    await trio.sleep(0.2)

    again = await start_daemon(nursery, env)  # the chain still halted, the target promoted
    await wait_until(lambda: state_is(again.url, "promoted"), within=5)
    sim.upgrade_after = 0.5  # the new binary starts
    await wait_until(lambda: state_is(again.url, "resumed"), within=8)
    await trio.sleep(1.0)
    body = (await status(again.url))["notifications"]
    again.stop()
    # Nothing told before is told again; what this process saw happen (the node restarting
    # on the new binary, the chain resuming) is told once.
    after = types(sink.posts_to(HOOK))
    assert after == [*types(told), "node_upgraded", "resumed"], after
    assert body["channels"][0]["counts"]["sent"] == 2


async def test_a_sigterm_right_after_the_promotion_still_tells_it(
    nursery: trio.Nursery,
    registry_none: RunningRegistry,
    unique_repo: str,
    sink: NotifySink,
    tmp_path: Path,
) -> None:
    """Pods get rolled around the halt. A SIGTERM while `halted` and `promoted` are still
    queued gives them NOTIFY_DRAIN seconds: a restarted daemon finds `already_promoted` and
    would never tell them."""
    reg = registry_none
    reg.push_image(unique_repo, "release-v7")
    sim = await start_sim(nursery, height=100, block_time=math.inf, upgrade_after=None)
    sim.schedule_plan("v7", sim.height + 3)
    env = daemon_env(sim.url, reg, unique_repo, **notify_env(sink, NOTIFY_URLS=""))
    log = tmp_path / "daemon.log"
    proc, url = spawn_daemon(env, log=log)
    try:
        await run_chain_once_ready(sim, url, 1.0)
        await posts(sink, HOOK, 1, within=6)  # scheduled
        sink.hang_all(1.0)  # from now on the service takes 1 s to answer each post
        await wait_until(lambda: state_is(url, "promoted"), within=10)
        assert types(sink.posts_to(HOOK)) == ["scheduled"], "halted is still in flight"
    finally:
        begun = time.monotonic()
        code = stop(proc)
        took = time.monotonic() - begun
    assert code == 0
    assert types(sink.posts_to(HOOK)) == ["scheduled", "halted", "promoted"]
    assert took < NOTIFY_DRAIN + 3, took
    assert "notifications_draining" in log.read_text()


async def _equals(value: Any, expected: str) -> bool:
    return bool(await value == expected)


async def _true(value: bool) -> bool:
    return value


async def _text(page: str) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(page, timeout=5)).text


@pytest.mark.parametrize(
    "env",
    [
        {"NOTIFY_URLS": "bogus://S3CRET@host/S3CRET"},
        {"NOTIFY_URLS": "json://127.0.0.1:9/ok, tgram://S3CRET"},
        {"NOTIFY_WEBHOOK_URL": "mailto:S3CRET@example.com"},
    ],
)
def test_bad_notify_urls_exit_2_at_start_up_naming_no_secret(env: dict[str, str]) -> None:
    proc, _ = cli({**BASE, **env}, "run")
    assert proc.returncode == 2, proc.stderr
    name = next(iter(env))
    assert f"  - {name}: " in proc.stderr
    assert "S3CRET" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr

"""`gopher-updater demo`: the whole job, locally, in well under a minute.

A chain simulator producing a block a second with an upgrade plan a few blocks ahead, a real
registry (Debian's `docker-registry`, Bearer-token auth when the test extras are installed)
holding a multi-arch `release-` image (an OCI index with two platforms), and the daemon with
the production default `POLL_INTERVAL=1m`: adaptive polling has to catch the halt on its own.
A Flux Receiver simulator (generic-hmac, the notification-controller's own checks) takes the
daemon's nudge, and the chain's "new binary" restarts `UPGRADE_AFTER` seconds after the halt.
It shows the climb to H, the daemon's state changes, the promotion and an independent digest
check, then the upgrade's timeline as the daemon's /status reports it: halt -> promoted ->
nudged -> node upgraded -> resumed, with the measured delays. A notification sink takes the
daemon's signed webhook (and, with Apprise installed, its `json://` posts too) and every
notification is printed as it arrives. It cleans up everything it started.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import trio

from gopher_updater.logs import configure
from gopher_updater.testing.chainsim import ChainSim
from gopher_updater.testing.fluxsim import FluxSim
from gopher_updater.testing.notifysink import NotifySink
from gopher_updater.testing.registry import RunningRegistry, running_registry
from gopher_updater.testing.stack import daemon_env, start_daemon

REPO = "demo/node"
PLAN = "v2.0.0"
TIMEOUT = 50.0
UPGRADE_AFTER = 3.0  # seconds from the halt until the new binary runs block H
FLUX_TOKEN = b"demo-token"
NOTIFY_KEY = b"demo-notify-key"
HOOK, APPRISE = "/notify", "/apprise"


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


async def _progress(sim: ChainSim, halt: int, tty: bool) -> None:
    """One live line: height -> H and the ETA, rewritten in place on a terminal."""
    last = -1
    while not sim.halted:
        if sim.height != last:
            last = sim.height
            left = halt - last
            eta = left * sim.block_time
            line = f"    height {last} -> {halt}: {left} block(s) left, ETA {eta:.0f}s"
            print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
        await trio.sleep(0.05)
    end = f"    height {sim.height}: HALTED at the upgrade height (app height {sim.app_height})"
    print(("\r" + end) if tty else end, flush=True)


async def _wait_target(reg: RunningRegistry, source: str) -> None:
    # Polling on purpose: the registry is outside this process, there is no event to wait on.
    while await trio.to_thread.run_sync(reg.head_digest, REPO, "mainnet-" + PLAN) != source:  # noqa: ASYNC110
        await trio.sleep(0.05)


async def run_demo(blocks_ahead: int, block_time: float, workdir: Path) -> bool:
    auth = "token" if importlib.util.find_spec("cryptography") else "none"
    tty = sys.stdout.isatty()
    _say(f"starting a real registry (docker-registry, auth: {auth})")
    with running_registry(auth, workdir=workdir) as reg:  # type: ignore[arg-type]
        source = reg.push_image(REPO, "release-" + PLAN, "oci-index")
        print(f"    pushed {REPO}:release-{PLAN} (multi-arch OCI index) {source}")
        flux = FluxSim.for_image_repository(FLUX_TOKEN)
        with flux, NotifySink(key=NOTIFY_KEY) as sink:
            ok = await _with_receiver(reg, flux, sink, source, blocks_ahead, block_time, tty)
    _say("demo finished; simulator, receiver, registry and daemon stopped" if ok else "demo FAILED")
    return ok


async def _with_receiver(
    reg: RunningRegistry,
    flux: FluxSim,
    sink: NotifySink,
    source: str,
    blocks_ahead: int,
    block_time: float,
    tty: bool,
) -> bool:
    _say(f"Flux Receiver simulator at {flux.base_url} (generic-hmac, ImageRepository 'node')")
    async with trio.open_nursery() as nursery:
        sim = ChainSim(height=1000, block_time=block_time, upgrade_after=UPGRADE_AFTER)
        await nursery.start(sim.run)
        halt = sim.height + blocks_ahead
        sim.schedule_plan(PLAN, halt)
        _say(f"chain simulator at {sim.url}: plan {PLAN!r} at height {halt}, 1 block/s")
        env = daemon_env(
            sim.url,
            reg,
            REPO,
            POLL_INTERVAL="1m",
            LOG_FORMAT="console",
            FLUX_RECEIVER_URL=flux.url("gopher-updater"),
            FLUX_RECEIVER_TOKEN=FLUX_TOKEN.decode(),
            **_notify_env(sink),
        )
        _say(f"notification sink at {sink.url} (signed webhook; Apprise json:// if installed)")
        nursery.start_soon(_print_notifications, sink, tty)
        _say("starting gopher-updater (POLL_INTERVAL=1m; it speeds up near the height)")
        daemon = await start_daemon(nursery, env)
        print(f"    ops endpoints on {daemon.url} (/readyz /metrics /status /debug/pprof/)")
        _say("waiting for the chain to halt")
        with trio.move_on_after(TIMEOUT) as timer:
            await _progress(sim, halt, tty)
            await _wait_target(reg, source)
        if timer.cancelled_caught:
            _say("FAILED: no promotion within the time limit")
            nursery.cancel_scope.cancel()
            return False
        latency = trio.current_time() - sim.height_reached_at[halt]
        _say(f"promoted {latency:.2f}s after block {halt} appeared")
        skopeo = await trio.to_thread.run_sync(reg.skopeo_digest, REPO, "mainnet-" + PLAN)
        raw = reg.head_digest(REPO, "mainnet-" + PLAN)
        print(f"    source release-{PLAN}: {source}")
        print(f"    target mainnet-{PLAN}: {raw} (registry HEAD)")
        if skopeo is not None:
            print(f"    target mainnet-{PLAN}: {skopeo} (skopeo inspect --raw | sha256)")
        ok = raw == source and (skopeo is None or skopeo == source)
        print("    digests match: the exact manifest was promoted" if ok else "    MISMATCH")
        _say(f"Flux rolls the nodes; the new binary starts {UPGRADE_AFTER:g}s after the halt")
        with trio.move_on_after(TIMEOUT) as timer:
            upgrade = await _wait_resumed(daemon.url)
        if timer.cancelled_caught:
            _say("FAILED: the daemon did not see the chain resume")
            nursery.cancel_scope.cancel()
            return False
        print(f"    chain resumed: height {sim.height}, applied {sim.applied}")
        _show_timeline(upgrade, flux)
        await trio.sleep(1.0)  # the last notifications land
        _show_notifications(sink)
        nursery.cancel_scope.cancel()
    return ok


async def _wait_resumed(url: str) -> dict[str, Any]:
    """The daemon's /status `upgrade` block, once it says `resumed`."""
    async with httpx.AsyncClient() as client:
        while True:
            upgrade = (await client.get(url + "/status", timeout=5)).json()["upgrade"]
            if upgrade is not None and upgrade["state"] == "resumed":
                return dict(upgrade)
            await trio.sleep(0.1)


def _show_timeline(upgrade: dict[str, Any], flux: FluxSim) -> None:
    _say(f"the upgrade's timeline (GET /status: upgrade, plan {upgrade['plan']!r})")
    events = upgrade["events"]
    start = events[0]["at"]
    labels = {"node_upgraded": "node upgraded"}
    for event in events:
        name = labels.get(event["state"], event["state"])
        print(f"    +{event['at'] - start:6.2f}s  {name}")
    print(
        f"    promotion delay (block H seen by the daemon -> target written): "
        f"{upgrade['promotion_delay_seconds']:.2f}s"
    )
    print(f"    halt duration (block H -> block H+1): {upgrade['halt_duration_seconds']:.2f}s")
    calls = flux.calls()
    if calls:
        first = calls[0]
        body = json.loads(first.body)
        signature = (first.header("X-Signature") or "unsigned")[:15]
        print(
            f"    Receiver: {len(calls)} call(s) so far, the first {first.status} "
            f"{first.verdict} ({signature}...): {body['type']} {body['target_tag']}"
        )


def _notify_env(sink: NotifySink) -> dict[str, str]:
    env = {"NOTIFY_WEBHOOK_URL": sink.url + HOOK, "NOTIFY_WEBHOOK_TOKEN": NOTIFY_KEY.decode()}
    if importlib.util.find_spec("apprise") is not None:
        env["NOTIFY_URLS"] = sink.apprise_url(APPRISE)
    return env


async def _print_notifications(sink: NotifySink, tty: bool) -> None:
    """Each webhook notification as it lands: its type, its line, whether the HMAC checks."""
    shown = 0
    while True:
        posts = sink.posts_to(HOOK)
        for post in posts[shown:]:
            body = post.json()
            signed = "signature ok" if post.signature_ok else "BAD SIGNATURE"
            line = f"    notification: {body['type']:<13} {body['text']}  ({signed})"
            print(("\r\033[K" + line) if tty else line, flush=True)
        shown = len(posts)
        await trio.sleep(0.1)


def _show_notifications(sink: NotifySink) -> None:
    hooks, apprise = sink.posts_to(HOOK), sink.posts_to(APPRISE)
    _say(f"notifications received by the sink: {len(hooks)} webhook, {len(apprise)} Apprise")
    print("    webhook: " + " -> ".join(p.json()["type"] for p in hooks))
    ok = all(p.signature_ok for p in hooks)
    print("    every webhook signature verified" if ok else "    a webhook signature FAILED")
    if apprise:
        print(f"    Apprise json:// (title {apprise[0].json()['title']!r}): same lines, same order")


def main(*, blocks_ahead: int = 6, block_time: float = 1.0) -> int:
    configure("info", "console")
    workdir = Path(tempfile.mkdtemp(prefix="gopher-updater-demo-"))
    try:
        ok = trio.run(run_demo, blocks_ahead, block_time, workdir)
    except RuntimeError as exc:  # e.g. docker-registry not installed
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1

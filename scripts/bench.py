"""`just bench`: speed and memory of gopher-updater, measured on loopback, from one run.

Prints:
- promotion latency from block H visible to target tag resolvable (several runs, min/median/
  max), with the production POLL_INTERVAL=1m, at 1 s and at 6 s blocks (+-10 % jitter), and
  the LCD requests each upgrade spent from the plan first seen to the promotion;
- halt -> first Flux nudge: block H visible to the first call a Receiver simulator accepted
  (generic-hmac, signed), same runs;
- the same two figures with a notification sink that hangs 30 s on every post (webhook and
  Apprise `json://`): notifications must never move them;
- registry requests per promotion (counted by a forwarding proxy in front of the registry);
- steady-state LCD requests and bytes per idle poll against a simulator holding the 218 real
  Cosmos Hub proposals;
- registry requests caused by 100 readiness probes;
- time from process start to the first /readyz 200;
- idle RSS after 60 s;
- /healthz latency p50/p99 over 1,000 requests on a keep-alive connection.

The daemon runs as a real subprocess (`python -m gopher_updater`); the chain simulator runs in
this process on trio; blocking calls go to threads so they never stall the simulator.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import trio

from gopher_updater.testing.chainsim import ChainSim, load_cosmoshub_proposals
from gopher_updater.testing.fluxsim import FluxSim
from gopher_updater.testing.notifysink import NotifySink
from gopher_updater.testing.registry import FaultProxy, RunningRegistry, running_registry
from gopher_updater.testing.stack import daemon_env, spawn_daemon, wait_http

#: What a poll asks; the governance listings (every 10 polls) are reported separately.
POLL_ROUTES = ("current_plan", "blocks_latest", "applied_plan")
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "cosmos"
TARGETS = {
    "latency_median_s": 0.2,
    "latency_max_s": 0.45,
    "nudge_median_s": 1.0,
    "lcd_requests_per_upgrade": 120,
    "requests_per_idle_poll": 1,
    "bytes_per_idle_poll": 4096,
    "registry_requests_per_probe": 0,
    "registry_requests_per_promotion": 5,
    "idle_rss_mb": 60,
    "ready_s": 1.5,
}


def _metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


FLUX_TOKEN = b"bench-token"


def _receiver() -> FluxSim:
    return FluxSim.for_image_repository(FLUX_TOKEN)


async def promotion_run(
    reg: RunningRegistry, run: int, block_time: float, ahead: int
) -> dict[str, float]:
    """One upgrade: the plan `ahead` blocks away when the daemon starts (POLL_INTERVAL=1m),
    blocks every `block_time` s (+-10 % seeded jitter). Measures block H visible -> target
    resolvable, block H visible -> first nudge a Receiver accepted, and the LCD poll requests
    spent from the plan first seen (the daemon's first poll) to the promotion."""
    with _receiver() as flux:
        return await _promotion_run(reg, run, block_time, ahead, flux, {})


async def hung_sink_run(reg: RunningRegistry, run: int) -> dict[str, float]:
    """A promotion run (1 s blocks) with both notification channels pointed at a sink that
    hangs."""
    with _receiver() as flux, NotifySink() as sink:
        sink.hang_all(30.0)
        notify = {
            "NOTIFY_WEBHOOK_URL": sink.url + "/hook",
            "NOTIFY_URLS": sink.apprise_url("/apprise"),
        }
        return await _promotion_run(reg, run, 1.0, 8, flux, notify)


async def _promotion_run(
    reg: RunningRegistry,
    run: int,
    block_time: float,
    ahead: int,
    flux: FluxSim,
    notify: dict[str, str],
) -> dict[str, float]:
    repo = f"bench/latency{int(block_time)}s{run}{'-hung' if notify else ''}"
    source = await trio.to_thread.run_sync(reg.push_image, repo, "release-v2", "oci-index")
    async with trio.open_nursery() as nursery:
        sim = ChainSim(height=1000, block_time=block_time, block_jitter=0.1, seed=run)
        await nursery.start(sim.run)
        halt = sim.height + ahead
        sim.schedule_plan("v2", halt)
        with FaultProxy(reg.url) as proxy:
            env = daemon_env(
                sim.url,
                reg,
                repo,
                POLL_INTERVAL="1m",
                LOG_LEVEL="warning",
                FLUX_RECEIVER_URL=flux.url("gopher-updater"),
                FLUX_RECEIVER_TOKEN=FLUX_TOKEN.decode(),
                **notify,
            )
            env["REGISTRY_URL"] = proxy.url
            proc, url = spawn_daemon(env)
            try:
                ready = await trio.to_thread.run_sync(
                    lambda: wait_http(url + "/readyz", status=200, timeout=20)
                )
                await sim.wait_until(lambda s: s.halted)
                seen = len(proxy.log)
                target = "mainnet-v2"
                with trio.fail_after(30):
                    # Polling on purpose: "resolvable" is what a client of the registry sees.
                    while (  # noqa: ASYNC110
                        await trio.to_thread.run_sync(reg.head_digest, repo, target) != source
                    ):
                        await trio.sleep(0.01)
                latency = trio.current_time() - sim.height_reached_at[halt]
                lcd_requests = sum(sim.stats[k].requests for k in POLL_ROUTES)
                with trio.fail_after(10):
                    while not [c for c in flux.calls() if c.status == 200]:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                # The Receiver records time.monotonic(); the chain trio's clock.
                offset = time.monotonic() - trio.current_time()
                accepted = next(c for c in flux.calls() if c.status == 200)
                nudge = accepted.at - (sim.height_reached_at[halt] + offset)
                # The proxy logs a request once its answer is sent: let the verifying HEAD
                # land. (This script's own HEADs go straight to the registry, not the proxy.)
                await trio.sleep(0.5)
                requests = len(proxy.log) - seen
            finally:
                await trio.to_thread.run_sync(_stop, proc)
        nursery.cancel_scope.cancel()
    return {
        "latency": latency,
        "nudge": nudge,
        "ready": ready,
        "registry_requests": requests,
        "lcd_requests": lcd_requests,
    }


async def idle_run(reg: RunningRegistry, seconds: float) -> dict[str, Any]:
    repo = "bench/idle"
    await trio.to_thread.run_sync(reg.push_image, repo, "release-v99", "docker-v2")
    proposals = load_cosmoshub_proposals(FIXTURES)
    async with trio.open_nursery() as nursery:
        sim = ChainSim(height=21_000_000, block_time=1.0, proposals=proposals)
        await nursery.start(sim.run)
        env = daemon_env(sim.url, reg, repo, POLL_INTERVAL="1s", LOG_LEVEL="warning")
        proc, url = spawn_daemon(env)
        try:
            ready = await trio.to_thread.run_sync(
                lambda: wait_http(url + "/readyz", status=200, timeout=20)
            )
            await trio.sleep(3)  # start-up governance listing and credential check are done

            def polls() -> float:
                text = httpx.get(url + "/metrics").text
                return _metric_sum(text, "gopher_updater_polls_total")

            polls_before = await trio.to_thread.run_sync(polls)
            stats_before = {k: (v.requests, v.bytes_out) for k, v in sim.stats.items()}
            await trio.sleep(seconds - 3)
            polls_done = await trio.to_thread.run_sync(polls) - polls_before
            delta = {
                k: (v.requests - stats_before[k][0], v.bytes_out - stats_before[k][1])
                for k, v in sim.stats.items()
            }
            poll_requests = sum(delta[k][0] for k in POLL_ROUTES)
            poll_bytes = sum(delta[k][1] for k in POLL_ROUTES)
            gov_requests = sum(r for k, (r, _) in delta.items() if k not in POLL_ROUTES)
            gov_bytes = sum(b for k, (_, b) in delta.items() if k not in POLL_ROUTES)
            rss = psutil.Process(proc.pid).memory_info().rss / 1e6

            def probes() -> tuple[float, list[float]]:
                with httpx.Client(timeout=5) as client:
                    before = _metric_sum(
                        client.get(url + "/metrics").text, "gopher_updater_registry_requests"
                    )
                    for _ in range(100):
                        client.get(url + "/readyz")
                    after = _metric_sum(
                        client.get(url + "/metrics").text, "gopher_updater_registry_requests"
                    )
                    timings = []
                    for _ in range(1000):
                        t0 = time.perf_counter()
                        client.get(url + "/healthz")
                        timings.append(time.perf_counter() - t0)
                return after - before, timings

            probe_requests, timings = await trio.to_thread.run_sync(probes)
        finally:
            await trio.to_thread.run_sync(_stop, proc)
        nursery.cancel_scope.cancel()
    timings.sort()
    return {
        "ready": ready,
        "polls": polls_done,
        "requests_per_poll": poll_requests / polls_done,
        "bytes_per_poll": poll_bytes / polls_done,
        "governance_requests": gov_requests,
        "governance_bytes": gov_bytes,
        "rss_mb": rss,
        "probe_registry_requests": probe_requests,
        "healthz_p50_ms": timings[len(timings) // 2] * 1000,
        "healthz_p99_ms": timings[int(len(timings) * 0.99)] * 1000,
    }


def _report(kind: str, run: int, runs: int, result: dict[str, float]) -> None:
    print(
        f"  {kind} {run + 1}/{runs}: latency {result['latency'] * 1000:.0f} ms, "
        f"first nudge {result['nudge'] * 1000:.0f} ms, "
        f"{result['lcd_requests']:.0f} LCD requests, "
        f"{result['registry_requests']} registry requests, ready {result['ready']:.2f}s",
        flush=True,
    )


async def bench(runs: int, hung_runs: int, idle_seconds: float) -> int:
    with running_registry("token") as reg:
        results: dict[float, list[dict[str, float]]] = {}
        for block_time, ahead in ((1.0, 8), (6.0, 6)):
            for run in range(runs):
                result = await promotion_run(reg, run, block_time, ahead)
                _report(f"{block_time:g} s blocks, run", run, runs, result)
                results.setdefault(block_time, []).append(result)
        hung = []
        for run in range(hung_runs):
            hung.append(await hung_sink_run(reg, run))
            _report("hung-sink run", run, hung_runs, hung[-1])
        print(f"  idle run ({idle_seconds:.0f}s, 218 proposals on chain)...", flush=True)
        idle = await idle_run(reg, idle_seconds)
    everything = [r for rs in results.values() for r in rs]
    readies = [r["ready"] for r in everything] + [idle["ready"]]
    per_promotion = max(r["registry_requests"] for r in everything)
    rows = []
    for block_time, found in results.items():
        latencies = [r["latency"] for r in found]
        median = statistics.median(latencies)
        lcd = [r["lcd_requests"] for r in found]
        rows.append(
            (
                f"latency min/median/max, {block_time:g} s blocks (s)",
                f"{min(latencies):.3f} / {median:.3f} / {max(latencies):.3f}",
                f"med <= {TARGETS['latency_median_s']}, max <= {TARGETS['latency_max_s']}",
                median <= TARGETS["latency_median_s"]
                and max(latencies) <= TARGETS["latency_max_s"],
            )
        )
        rows.append(
            (
                f"LCD requests plan seen -> promoted, {block_time:g} s",
                f"{min(lcd):.0f} / {statistics.median(lcd):.0f} / {max(lcd):.0f}",
                f"<= {TARGETS['lcd_requests_per_upgrade']}" if block_time == 6.0 else "-",
                block_time != 6.0 or max(lcd) <= TARGETS["lcd_requests_per_upgrade"],
            )
        )
    nudges = [r["nudge"] for r in everything]
    rows += [
        (
            "halt -> first nudge min/median/max (s)",
            f"{min(nudges):.3f} / {statistics.median(nudges):.3f} / {max(nudges):.3f}",
            f"median <= {TARGETS['nudge_median_s']}",
            statistics.median(nudges) <= TARGETS["nudge_median_s"],
        ),
        *(
            [
                (
                    "sink hung 30 s: latency / nudge median (s)",
                    f"{statistics.median(r['latency'] for r in hung):.3f} / "
                    f"{statistics.median(r['nudge'] for r in hung):.3f}",
                    f"median <= {TARGETS['latency_median_s']}",
                    statistics.median(r["latency"] for r in hung) <= TARGETS["latency_median_s"],
                )
            ]
            if hung
            else []
        ),
        (
            "registry requests per promotion (max)",
            f"{per_promotion}",
            f"<= {TARGETS['registry_requests_per_promotion']}",
            per_promotion <= TARGETS["registry_requests_per_promotion"],
        ),
        (
            "LCD requests per idle poll",
            f"{idle['requests_per_poll']:.2f}",
            f"<= {TARGETS['requests_per_idle_poll']}",
            idle["requests_per_poll"] <= TARGETS["requests_per_idle_poll"],
        ),
        (
            "LCD bytes per idle poll",
            f"{idle['bytes_per_poll']:.0f}",
            f"<= {TARGETS['bytes_per_idle_poll']}",
            idle["bytes_per_poll"] <= TARGETS["bytes_per_idle_poll"],
        ),
        (
            f"governance listings in {idle_seconds - 3:.0f}s (every 10 polls)",
            f"{idle['governance_requests']} req, {idle['governance_bytes'] / 1e3:.0f} KB",
            "-",
            True,
        ),
        (
            "registry requests per 100 /readyz probes",
            f"{idle['probe_registry_requests']:.0f}",
            "0",
            idle["probe_registry_requests"] == 0,
        ),
        (
            "start to first /readyz 200 (s, max)",
            f"{max(readies):.2f}",
            f"<= {TARGETS['ready_s']}",
            max(readies) <= TARGETS["ready_s"],
        ),
        (
            f"idle RSS after {idle_seconds:.0f}s (MB)",
            f"{idle['rss_mb']:.1f}",
            f"<= {TARGETS['idle_rss_mb']}",
            idle["rss_mb"] <= TARGETS["idle_rss_mb"],
        ),
        (
            "/healthz latency p50 / p99 (ms)",
            f"{idle['healthz_p50_ms']:.2f} / {idle['healthz_p99_ms']:.2f}",
            "-",
            True,
        ),
    ]
    print()
    print(f"{'figure':<44} {'measured':<26} {'target':<24} ok")
    for name, value, target, ok in rows:
        print(f"{name:<44} {value:<26} {target:<24} {'yes' if ok else 'NO'}")
    return 0 if all(ok for *_, ok in rows) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="latency runs per block time")
    parser.add_argument(
        "--hung-sink-runs", type=int, default=3, help="promotion runs with a hanging sink"
    )
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle run length")
    args = parser.parse_args()
    print(
        f"gopher-updater benchmark ({time.strftime('%Y-%m-%d')}, python {sys.version.split()[0]})"
    )
    return trio.run(bench, args.runs, args.hung_sink_runs, args.idle_seconds)


if __name__ == "__main__":
    sys.exit(main())

"""Several LCD endpoints end to end: the chain simulator serving one chain on several ports,
a real registry, and the daemon's real `run()` (real HTTP both ways).

Failover at the halt, a lagging endpoint, a lying endpoint under RPC_QUORUM=2, a hung one;
and what an operator sees of each endpoint (metrics, /status, /readyz).
"""

from __future__ import annotations

import math
import re

import trio

from gopher_updater.testing.chainsim import ChainSim, Fault
from gopher_updater.testing.registry import RunningRegistry
from gopher_updater.testing.stack import daemon_env, start_daemon
from tests.test_daemon import _equals, get_json, head, metric, metrics_text, wait_until

TARGET = "mainnet-v2"


async def promoted_after_h(reg: RunningRegistry, repo: str, source: str, sim: ChainSim) -> float:
    """Seconds from block H to the target tag resolving to `source`; never before H."""
    while not sim.halted:
        assert await head(reg, repo, TARGET) is None, f"promoted early at {sim.height}"
        await trio.sleep(0.02)
    halt = sim.plan.height if sim.plan else sim.height
    at = await wait_until(lambda: _equals(head(reg, repo, TARGET), source), within=10, every=0.01)
    return at - sim.height_reached_at[halt]


async def chain_and_image(
    nursery: trio.Nursery, reg: RunningRegistry, repo: str
) -> tuple[ChainSim, str]:
    """A running chain at height 100 with 1 s blocks, and `release-v2` pushed: its digest."""
    source = reg.push_image(repo, "release-v2")
    sim = ChainSim(height=100, block_time=1.0)
    await nursery.start(sim.run)
    return sim, source


async def test_failover_at_the_halt_promotes_through_the_other_endpoint(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_none
    sim, source = await chain_and_image(nursery, reg, unique_repo)
    other = await sim.add_endpoint()
    h = sim.height + 9
    sim.schedule_plan("v2", h)
    sim.primary.down_at(h - 2)  # the first endpoint, which showed the plan, restarts for good
    env = daemon_env(f"{sim.url},{other.url}", reg, unique_repo, POLL_INTERVAL="1m")
    d = await start_daemon(nursery, env)
    latency = await promoted_after_h(reg, unique_repo, source, sim)
    assert latency <= 1.0, f"promoted {latency:.2f}s after H"
    text = await metrics_text(d.url)
    first, second = d.cfg.lcd_endpoints[0].label, d.cfg.lcd_endpoints[1].label
    assert metric(text, "gopher_updater_lcd_up", endpoint=first) == 0
    assert metric(text, "gopher_updater_lcd_up", endpoint=second) == 1
    assert metric(text, "gopher_updater_lcd_height", endpoint=second) == h
    _, status = await get_json(d.url + "/status")
    by_label = {e["endpoint"]: e for e in status["chain"]["endpoints"]}
    assert by_label[first]["up"] is False and by_label[first]["last_error"]
    assert by_label[second]["lag"] == 0


async def test_a_lagging_endpoint_neither_delays_nor_triggers(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_none
    sim, source = await chain_and_image(nursery, reg, unique_repo)
    behind = await sim.add_endpoint(lag=2)  # a backend two blocks behind, listed first
    sim.schedule_plan("v2", sim.height + 9)
    env = daemon_env(f"{behind.url},{sim.url}", reg, unique_repo, POLL_INTERVAL="1m")
    d = await start_daemon(nursery, env)
    latency = await promoted_after_h(reg, unique_repo, source, sim)
    assert latency <= 0.5, f"promoted {latency:.2f}s after H"
    _, status = await get_json(d.url + "/status")
    lags = {e["endpoint"]: e["lag"] for e in status["chain"]["endpoints"]}
    assert lags[d.cfg.lcd_endpoints[0].label] == 2


async def test_quorum_two_a_lying_endpoint_alone_never_promotes_two_agreeing_do(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_none
    sim, source = await chain_and_image(nursery, reg, unique_repo)
    liar = await sim.add_endpoint(ahead=4)  # shows the halt 4 blocks early
    sim.schedule_plan("v2", sim.height + 9)
    env = daemon_env(f"{liar.url},{sim.url}", reg, unique_repo, RPC_QUORUM="2", POLL_INTERVAL="1s")
    d = await start_daemon(nursery, env)
    # The liar shows the halt for 4 blocks: nothing (promoted_after_h checks every 20 ms).
    latency = await promoted_after_h(reg, unique_repo, source, sim)
    assert latency <= 0.5, f"promoted {latency:.2f}s after H"
    code, body = await get_json(d.url + "/readyz")
    assert body["checks"]["chain"]["ok"] is True, body
    # Quorum 2 of 2: one endpoint down makes the daemon unready, and says why.
    sim.primary.go_down()
    with trio.fail_after(60):
        while (await get_json(d.url + "/readyz"))[1]["checks"]["chain"]["ok"]:  # noqa: ASYNC110
            await trio.sleep(1.0)
    code, body = await get_json(d.url + "/readyz")
    assert code == 503 and "RPC_QUORUM is 2" in body["checks"]["chain"]["last_error"], body


async def test_a_hung_endpoint_never_makes_a_poll_outlast_the_request_timeout(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_none
    sim, source = await chain_and_image(nursery, reg, unique_repo)
    hung = await sim.add_endpoint()
    hung.set_fault("*", Fault.HANG)
    sim.schedule_plan("v2", sim.height + 8)
    env = daemon_env(f"{hung.url},{sim.url}", reg, unique_repo, REQUEST_TIMEOUT="2s")
    d = await start_daemon(nursery, env)
    latency = await promoted_after_h(reg, unique_repo, source, sim)
    assert latency <= 1.0, f"promoted {latency:.2f}s after H"
    text = await metrics_text(d.url)
    count = metric(text, "gopher_updater_poll_duration_seconds_count")
    within = metric(text, "gopher_updater_poll_duration_seconds_bucket", le="1.0")
    assert count > 10 and within == count, (within, count)  # every poll well inside 2 s
    label = d.cfg.lcd_endpoints[0].label
    cut = metric(
        text,
        "gopher_updater_lcd_requests_total",
        endpoint=label,
        route="current_plan",
        result="cancelled",
    )
    assert cut >= 1
    assert not re.search(r"lcd_up\{endpoint=\"[^\"]*@", text)  # never userinfo in a label


async def test_check_reports_every_endpoint(nursery: trio.Nursery) -> None:
    from gopher_updater import config
    from gopher_updater.check import run_check

    sim = ChainSim(height=100, block_time=math.inf)
    await nursery.start(sim.run)
    behind = await sim.add_endpoint(lag=2)
    down = await sim.add_endpoint()
    down.go_down()
    sim.advance(3)
    urls = f"{sim.url},http://user:s3cret@{behind.url.removeprefix('http://')},{down.url}"
    base = {
        "RPC_URL": urls,
        "REGISTRY_URL": "http://127.0.0.1:9",
        "DOCKERHUB_USER": "me",
        "DOCKERHUB_PASSWORD": "x",
        "REPO_PATH": "me/node",
        "TARGET_PREFIX": "mainnet-",
        "REQUEST_TIMEOUT": "500ms",
    }
    for quorum, mark in (("2", "warn"), ("3", "FAIL")):
        out: list[str] = []
        await run_check(config.load({**base, "RPC_QUORUM": quorum}), out)
        text = "\n".join(out)
        assert f"[ok  ] chain {sim.url}: height 103" in text
        assert f"[ok  ] chain {behind.url}: height 101 (2 behind)" in text
        assert f"[{mark}] chain {down.url}: " in text
        assert ("2 of 3 LCD endpoints answered" in text) == (quorum == "3")
        assert "s3cret" not in text

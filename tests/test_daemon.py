"""End-to-end: the daemon against the chain simulator and a real registry.

The daemon runs in-process (its real `run()`, ops app on a free port) or, where process
behaviour is the point (signals, exit codes, stdout), as a real subprocess. Every test reads
the registry independently (a raw HEAD with all four media types) rather than trusting the
daemon's own report.
"""

from __future__ import annotations

import math
import re
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio

from gopher_updater.model import Plan, ProposalStatus
from gopher_updater.testing.chainsim import ChainSim, Fault
from gopher_updater.testing.registry import FaultProxy, FaultResponse, RunningRegistry
from gopher_updater.testing.stack import daemon_env, spawn_daemon, start_daemon, wait_http

REPO = "me/node"


async def head(reg: RunningRegistry, repo: str, tag: str) -> str | None:
    return await trio.to_thread.run_sync(reg.head_digest, repo, tag)


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, within: float, every: float = 0.05
) -> float:
    """Poll `check` until true; returns the trio time at which it became true.

    Polling on purpose: the state lives in other processes (registry, daemon), there is no
    event to wait on.
    """
    with trio.fail_after(within):
        while not await check():  # noqa: ASYNC110
            await trio.sleep(every)
    return trio.current_time()


async def get_json(url: str) -> tuple[int, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(url, timeout=5)
    return response.status_code, response.json()


async def run_chain_once_ready(sim: ChainSim, url: str, block_time: float) -> None:
    """Start `sim`'s blocks (created frozen: `block_time=math.inf`) once the daemon at `url`
    is ready, so it meets the plan as it would in production: scheduled long before H.

    A spawned daemon can take seconds to start on a loaded 2-core machine; a chain already
    running would reach H before it watched, and a latency measured from H would measure
    the start-up.
    """
    await trio.to_thread.run_sync(lambda: wait_http(url + "/readyz", status=200))
    sim.block_time = block_time


async def metrics_text(url: str) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(url + "/metrics", timeout=5)).text


def metric(text: str, name: str, absent: float | None = 0.0, **labels: str) -> float | None:
    """The sample's value; `absent` when the page has no such series."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + "$", text, re.M)
    return float(found.group(1)) if found else absent


def registry_requests(text: str) -> float:
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^gopher_updater_registry_requests_total\{.*\} (\S+)$", text, re.M)
    )


async def start_sim(nursery: trio.Nursery, **kwargs: Any) -> ChainSim:
    sim = ChainSim(**kwargs)
    await nursery.start(sim.run)
    return sim


async def halted_sim(nursery: trio.Nursery, plan: str, *, blocks_ahead: int = 1) -> ChainSim:
    """A chain already halted at `plan`'s height (no block production of its own)."""
    sim = await start_sim(nursery, height=100, block_time=math.inf)
    sim.schedule_plan(plan, sim.height + blocks_ahead)
    sim.advance(blocks_ahead + 3)  # stops at the halt, however many blocks are asked for
    assert sim.halted and sim.height == 100 + blocks_ahead
    return sim


# --- the main job ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["docker-v2", "oci-index"])
async def test_promotes_at_the_halt_within_two_seconds(
    nursery: trio.Nursery, registry_token: RunningRegistry, unique_repo: str, kind: str
) -> None:
    reg = registry_token
    source = reg.push_image(unique_repo, "release-v2", kind)  # type: ignore[arg-type]
    sim = await start_sim(nursery, height=100, block_time=1.0)
    halt = sim.height + 5
    sim.schedule_plan("v2", halt)
    d = await start_daemon(nursery, daemon_env(sim.url, reg, unique_repo, POLL_INTERVAL="1m"))

    # Before H (including H-1) the target must not exist.
    while not sim.halted:
        assert await head(reg, unique_repo, "mainnet-v2") is None, f"early at {sim.height}"
        await trio.sleep(0.05)
    promoted_at = await wait_until(
        lambda: _equals(head(reg, unique_repo, "mainnet-v2"), source), within=5
    )
    latency = promoted_at - sim.height_reached_at[halt]
    assert latency < 2.0, f"promotion took {latency:.2f}s after block H"
    assert reg.skopeo_digest(unique_repo, "mainnet-v2") == source
    # The tag is visible before the retag's verifying HEAD returns and the worker publishes.
    await wait_until(lambda: _promotion_published(d.url), within=2)
    _, body = await get_json(d.url + "/status")
    assert body["last_promotion"]["outcome"] == "promoted"
    assert body["last_promotion"]["source_digest"] == source


async def _promotion_published(url: str) -> bool:
    _, body = await get_json(url + "/status")
    return body["last_promotion"] is not None


async def _equals(value: Awaitable[str | None], expected: str) -> bool:
    return await value == expected


async def test_cancelled_plan_is_never_promoted(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_none
    reg.push_image(unique_repo, "release-v2")
    sim = await start_sim(nursery, height=100, block_time=0.5)
    sim.schedule_plan("v2", 104)
    d = await start_daemon(nursery, daemon_env(sim.url, reg, unique_repo, POLL_INTERVAL="1s"))
    await wait_until(lambda: _true(sim.height >= 102), within=5)
    sim.cancel_plan()
    await wait_until(lambda: _true(sim.height >= 107), within=10)
    await trio.sleep(1.5)  # a poll or two after the cancel
    assert await head(reg, unique_repo, "mainnet-v2") is None
    text = await metrics_text(d.url)
    assert metric(text, "gopher_updater_retags_total", outcome="promoted") == 0
    assert metric(text, "gopher_updater_upgrade_height") == 0


async def test_failing_applied_plan_checks_back_off_and_resolve(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_none
    sim = await start_sim(nursery, height=100, block_time=math.inf)
    sim.schedule_plan("v14", 110)
    env = daemon_env(sim.url, reg, unique_repo, POLL_INTERVAL="10s")
    d = await start_daemon(nursery, env)
    await wait_until(lambda: _true(sim.stats["current_plan"].requests >= 1), within=5)
    sim.set_fault("applied_plan", Fault.HTTP_500)
    sim.cancel_plan()  # the plan vanishes: the daemon must ask applied_plan
    await trio.sleep(8)
    asked = sim.stats["applied_plan"].requests
    # Backing off from the fast rate: 4 Hz would be ~30 requests in 8 s.
    assert 2 <= asked <= 8, asked
    sim.set_fault("applied_plan", None)
    await wait_until(lambda: _true(sim.stats["applied_plan"].requests > asked), within=15)
    await trio.sleep(1)
    settled = sim.stats["applied_plan"].requests
    await trio.sleep(2)
    assert sim.stats["applied_plan"].requests == settled  # answered: no more asking
    text = await metrics_text(d.url)
    assert metric(text, "gopher_updater_retags_total", outcome="promoted") == 0


async def _true(value: bool) -> bool:
    return value


async def test_rescheduled_plan_is_promoted_only_at_the_new_height(
    nursery: trio.Nursery, registry_basic: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_basic
    source = reg.push_image(unique_repo, "release-v2")
    sim = await start_sim(nursery, height=100, block_time=0.5)
    sim.schedule_plan("v2", 104)
    await start_daemon(nursery, daemon_env(sim.url, reg, unique_repo, POLL_INTERVAL="1m"))
    await wait_until(lambda: _true(sim.height >= 102), within=5)
    sim.schedule_plan("v2", 109)  # same name, new height
    while not sim.halted:
        assert await head(reg, unique_repo, "mainnet-v2") is None, f"early at {sim.height}"
        await trio.sleep(0.05)
    assert sim.height == 109
    promoted_at = await wait_until(
        lambda: _equals(head(reg, unique_repo, "mainnet-v2"), source), within=5
    )
    assert promoted_at >= sim.height_reached_at[109]


async def test_invalid_plan_name_never_reaches_the_registry(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_none
    bad = "v2 upgrade/../x"  # spaces and slashes: not a tag
    sim = await start_sim(nursery, height=100, block_time=0.3)
    sim.schedule_plan(bad, 103)
    d = await start_daemon(nursery, daemon_env(sim.url, reg, unique_repo, POLL_INTERVAL="1s"))
    await wait_until(lambda: _true(sim.halted), within=5)
    await trio.sleep(1.5)
    _, body = await get_json(d.url + "/status")
    assert "not a valid image tag" in (body["problem"] or "")
    text = await metrics_text(d.url)
    assert sum(metric(text, "gopher_updater_retags_total", outcome=o) for o in _OUTCOMES) == 0
    # Only the credential check touched the registry (GET /v2/), never a manifest.
    methods = re.findall(r'registry_requests_total\{code="\d+",method="(\w+)"\}', text)
    assert set(methods) <= {"GET"}
    assert "release-" not in text


_OUTCOMES = ("promoted", "already_promoted", "conflict", "source_missing", "error")


async def test_source_pushed_after_the_halt_is_promoted_within_seconds(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_none
    sim = await start_sim(nursery, height=100, block_time=0.3)
    sim.schedule_plan("v3", 103)
    d = await start_daemon(nursery, daemon_env(sim.url, reg, unique_repo, POLL_INTERVAL="1m"))
    await wait_until(lambda: _true(sim.halted), within=5)
    await wait_until(lambda: _contains(get_json(d.url + "/status"), "missing"), within=5, every=0.2)
    source = await trio.to_thread.run_sync(reg.push_image, unique_repo, "release-v3", "oci-index")
    pushed = trio.current_time()
    done = await wait_until(
        lambda: _equals(head(reg, unique_repo, "mainnet-v3"), source), within=10
    )
    assert done - pushed < 5.0
    code, body = await get_json(d.url + "/readyz")
    assert code == 200 and "problem" not in body


async def _contains(answer: Awaitable[tuple[int, Any]], text: str) -> bool:
    _, body = await answer
    return text in str(body.get("problem") or "")


async def test_conflicting_target_is_left_alone_and_reported(
    nursery: trio.Nursery, registry_token: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_token
    reg.push_image(unique_repo, "release-v2")
    other = reg.push_image(unique_repo, "mainnet-v2")
    sim = await start_sim(nursery, height=100, block_time=0.3)
    sim.schedule_plan("v2", 103)
    d = await start_daemon(nursery, daemon_env(sim.url, reg, unique_repo, POLL_INTERVAL="1m"))
    await wait_until(lambda: _contains(get_json(d.url + "/readyz"), "conflict"), within=8)
    assert await head(reg, unique_repo, "mainnet-v2") == other
    text = await metrics_text(d.url)
    assert metric(text, "gopher_updater_retags_total", outcome="conflict") == 1
    await trio.sleep(1.0)  # it does not keep retrying a conflict
    text = await metrics_text(d.url)
    assert metric(text, "gopher_updater_retags_total", outcome="conflict") == 1


async def test_started_while_halted_promotes_at_once(
    nursery: trio.Nursery, registry_basic: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_basic
    source = reg.push_image(unique_repo, "release-v5", "docker-list")
    sim = await halted_sim(nursery, "v5", blocks_ahead=2)
    started = trio.current_time()
    await start_daemon(nursery, daemon_env(sim.url, reg, unique_repo))
    done = await wait_until(lambda: _equals(head(reg, unique_repo, "mainnet-v5"), source), within=5)
    assert done - started < 2.0


async def test_started_after_an_unwatched_upgrade_promotes_the_newest_once(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_none
    old = reg.push_image(unique_repo, "release-v6")
    new = reg.push_image(unique_repo, "release-v7")
    sim = await start_sim(nursery, height=100, block_time=math.inf)
    for pid, name, height in ((10, "v6", 102), (11, "v7", 104)):
        sim.add_proposal(pid, ProposalStatus.PASSED, Plan(name, height))
        sim.schedule_plan(name, height)
        sim.advance(10)
        sim.apply_plan()
    sim.advance(3)
    d = await start_daemon(nursery, daemon_env(sim.url, reg, unique_repo))
    await wait_until(lambda: _equals(head(reg, unique_repo, "mainnet-v7"), new), within=8)
    await trio.sleep(1.0)
    assert await head(reg, unique_repo, "mainnet-v6") is None, "only the newest is caught up"
    assert old != new
    text = await metrics_text(d.url)
    assert metric(text, "gopher_updater_retags_total", outcome="promoted") == 1


async def test_dry_run_reports_and_writes_nothing(
    nursery: trio.Nursery, registry_token: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_token
    source = reg.push_image(unique_repo, "release-v13")
    sim = await halted_sim(nursery, "v13")
    d = await start_daemon(nursery, daemon_env(sim.url, reg, unique_repo, DRY_RUN="true"))
    await wait_until(lambda: _promotion_reported(d.url), within=5)
    _, body = await get_json(d.url + "/status")
    assert body["last_promotion"]["outcome"] == "would_promote"
    assert body["last_promotion"]["dry_run"] is True
    assert body["last_promotion"]["source_digest"] == source
    assert await head(reg, unique_repo, "mainnet-v13") is None
    methods = re.findall(
        r'registry_requests_total\{code="\d+",method="(\w+)"\}', await metrics_text(d.url)
    )
    assert "PUT" not in methods


async def _promotion_reported(url: str) -> bool:
    _, body = await get_json(url + "/status")
    return body["last_promotion"] is not None


async def test_upcoming_upgrades_from_governance_are_preflighted(
    nursery: trio.Nursery, registry_basic: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_basic
    reg.push_image(unique_repo, "release-v21")
    sim = await start_sim(nursery, height=5000, block_time=math.inf)
    sim.add_proposal(30, ProposalStatus.PASSED, Plan("v19", 4000))  # history
    sim.add_proposal(31, ProposalStatus.PASSED, Plan("v20", 9000))  # passed, ahead
    sim.add_proposal(32, ProposalStatus.VOTING_PERIOD, Plan("v21", 9500))  # being voted
    sim.add_proposal(33, ProposalStatus.REJECTED, Plan("v22", 9900))
    d = await start_daemon(nursery, daemon_env(sim.url, reg, unique_repo))
    await wait_until(lambda: _preflight_done(d.url, "release-v21"), within=8)
    _, body = await get_json(d.url + "/status")
    assert [u["name"] for u in body["upcoming"]] == ["v20", "v21"]
    assert body["preflight"]["release-v20"]["present"] is False
    assert body["preflight"]["release-v21"]["present"] is True
    assert "release-v19" not in body["preflight"] and "release-v22" not in body["preflight"]
    text = await metrics_text(d.url)
    upcoming = "gopher_updater_source_tag_present"
    assert metric(text, upcoming, tag="release-v20", upgrade="upcoming", absent=None) == 0
    assert metric(text, upcoming, tag="release-v21", upgrade="upcoming") == 1
    assert await head(reg, unique_repo, "mainnet-v21") is None  # early warning, never a trigger


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", [Fault.HTTP_500, Fault.HTTP_503, Fault.HANG, Fault.GARBAGE, Fault.RESET]
)
async def test_lcd_and_registry_faults_never_promote_early(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str, fault: Fault
) -> None:
    reg = registry_none
    source = reg.push_image(unique_repo, "release-v8")
    sim = await start_sim(nursery, height=100, block_time=0.5, seed=7)
    sim.set_fault("*", fault, rate=0.2)
    sim.schedule_plan("v8", 106)
    with FaultProxy(reg.url) as proxy:
        proxy.script(
            FaultResponse(429, {"Retry-After": "1"}, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}'),
            FaultResponse(503),
            FaultResponse(503),
        )
        env = daemon_env(sim.url, reg, unique_repo, POLL_INTERVAL="1s", REQUEST_TIMEOUT="500ms")
        env["REGISTRY_URL"] = proxy.url
        d = await start_daemon(nursery, env)
        while not sim.halted:
            assert await head(reg, unique_repo, "mainnet-v8") is None, f"early at {sim.height}"
            await trio.sleep(0.05)
        await wait_until(lambda: _equals(head(reg, unique_repo, "mainnet-v8"), source), within=15)
        code, _ = await get_json(d.url + "/healthz")
        assert code == 200
        text = await metrics_text(d.url)
        assert metric(text, "gopher_updater_polls_total", result="error") >= 1


# --- ops endpoints ---------------------------------------------------------------------------


async def test_ops_endpoints_readiness_metrics_pprof_and_no_secrets(
    nursery: trio.Nursery, registry_token: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_token
    reg.push_image(unique_repo, "release-v9")
    sim = await start_sim(nursery, height=100, block_time=math.inf)
    sim.schedule_plan("v9", 200)
    sim.set_fault("current_plan", Fault.HANG)  # the first poll cannot finish
    env = daemon_env(sim.url, reg, unique_repo, POLL_INTERVAL="1s", REQUEST_TIMEOUT="1s")
    d = await start_daemon(nursery, env)
    code, body = await get_json(d.url + "/readyz")
    assert code == 503 and body["checks"]["chain"]["ok"] is False

    sim.set_fault("current_plan", None)
    await wait_until(lambda: _status_is(d.url + "/readyz", 200), within=5)
    # Let the plan's preflight finish so the registry is quiet (next check: 60 s away).
    await wait_until(lambda: _preflight_done(d.url, "release-v9"), within=5)

    before = registry_requests(await metrics_text(d.url))
    async with httpx.AsyncClient() as client:
        codes = [(await client.get(d.url + "/readyz")).status_code for _ in range(100)]
    assert codes == [200] * 100
    assert registry_requests(await metrics_text(d.url)) == before

    sim.set_fault("*", Fault.RESET)  # the chain goes down
    await wait_until(lambda: _status_is(d.url + "/readyz", 503), within=8)
    code, body = await get_json(d.url + "/readyz")
    assert body["checks"]["chain"]["last_error"]
    sim.set_fault("*", None)

    text = await metrics_text(d.url)
    for name in (
        "gopher_updater_chain_height",
        "gopher_updater_upgrade_height",
        "gopher_updater_upgrade_eta_seconds",
        "gopher_updater_polls_total",
        "gopher_updater_poll_duration_seconds_bucket",
        "gopher_updater_retags_total",
        "gopher_updater_source_tag_present",
        "gopher_updater_registry_requests_total",
        "gopher_updater_last_successful_poll_timestamp_seconds",
        "gopher_updater_build_info",
    ):
        assert re.search(rf"^{name}[{{ ]", text, re.M), name
    assert metric(text, "gopher_updater_upgrade_height") == 200
    assert (
        metric(text, "gopher_updater_source_tag_present", tag="release-v9", upgrade="scheduled")
        == 1
    )

    pages = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for path in ("/", "/tasks", "/threads", "/heap", "/heap", "/heap?stop=1"):
            response = await client.get(d.url + "/debug/pprof" + path)
            assert response.status_code == 200, path
            pages[path] = response.text
        assert "traced: current" in pages["/heap"]  # the second visit shows a snapshot
        text_profile = await client.get(d.url + "/debug/pprof/profile?seconds=0.3")
        assert text_profile.status_code == 200 and "Duration" in text_profile.text
        speedscope = await client.get(d.url + "/debug/pprof/profile?seconds=0.2&format=speedscope")
        assert speedscope.json()["$schema"].startswith("https://www.speedscope.app")
        proto = await client.get(d.url + "/debug/pprof/profile?seconds=0.2&format=pprof")
        assert proto.content[:2] == b"\x1f\x8b"  # gzip
        async with trio.open_nursery() as inner:  # one profile at a time
            inner.start_soon(client.get, d.url + "/debug/pprof/profile?seconds=2")
            await trio.sleep(0.5)
            busy = await client.get(d.url + "/debug/pprof/profile?seconds=1")
            assert busy.status_code == 409
        for path in ("/status", "/readyz", "/metrics"):
            pages[path] = (await client.get(d.url + path)).text
    assert "chain poller" in pages["/tasks"] and "retag worker" in pages["/tasks"]
    assert "MainThread" in pages["/threads"]
    for path, text in pages.items():
        assert reg.password not in text, path


async def _preflight_done(url: str, tag: str) -> bool:
    _, body = await get_json(url + "/status")
    return bool(body["preflight"].get(tag, {}).get("present"))


async def _status_is(url: str, code: int) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(url, timeout=2)).status_code == code
        except httpx.HTTPError:
            return False


# --- the process: signals, exit codes, logs, `check` ------------------------------------


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, float, str]:
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    return proc.returncode, time.monotonic() - start, (out + err).decode()


async def test_sigterm_exits_0_quickly_with_a_keepalive_client_and_no_secrets_in_logs(
    nursery: trio.Nursery, registry_token: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_token
    source = reg.push_image(unique_repo, "release-v10")
    sim = await start_sim(nursery, height=100, block_time=0.3)
    sim.schedule_plan("v10", 104)
    env = daemon_env(sim.url, reg, unique_repo, POLL_INTERVAL="1s", LOG_LEVEL="debug")
    proc, url = spawn_daemon(env)
    try:
        await trio.to_thread.run_sync(lambda: wait_http(url + "/readyz", status=200))
        await wait_until(lambda: _equals(head(reg, unique_repo, "mainnet-v10"), source), within=8)
        # A keep-alive client (like Prometheus) holding its connection open.
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(url + "/metrics")).status_code == 200
            assert (await client.get(url + "/healthz")).json() == {"status": "ok"}
            code, elapsed, logs = await trio.to_thread.run_sync(_stop, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, logs[-2000:]
    assert elapsed < 3.0
    assert reg.password not in logs
    assert "eyJ" not in logs  # no bearer token (a JWT) either, even at LOG_LEVEL=debug
    assert '"event": "promoted"' in logs
    assert "Traceback" not in logs


async def test_sigterm_during_registry_retry_exits_0_quickly(
    nursery: trio.Nursery, registry_none: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_none
    reg.push_image(unique_repo, "release-v11")
    sim = await halted_sim(nursery, "v11")  # the daemon wants to promote at once
    with FaultProxy(reg.url) as proxy:
        proxy.script(*[FaultResponse(503, {"Retry-After": "5"}) for _ in range(50)])
        env = daemon_env(sim.url, reg, unique_repo, REGISTRY_URL=proxy.url)
        proc, url = spawn_daemon(env)
        try:
            await trio.to_thread.run_sync(lambda: wait_http(url + "/healthz", status=200))
            await wait_until(lambda: _true(len(proxy.log) >= 3), within=8)
            code, elapsed, logs = await trio.to_thread.run_sync(_stop, proc)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 0, logs[-2000:]
    assert elapsed < 3.0
    assert await head(reg, unique_repo, "mainnet-v11") is None


async def test_check_command(
    nursery: trio.Nursery, registry_basic: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_basic
    sim = await start_sim(nursery, height=100, block_time=0.5)
    sim.schedule_plan("v12", 200)
    env = daemon_env(sim.url, reg, unique_repo)

    def check() -> subprocess.CompletedProcess[str]:
        proc, _ = spawn_daemon(env, "check")
        out, err = proc.communicate(timeout=30)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())

    missing = await trio.to_thread.run_sync(check)
    assert missing.returncode == 1
    assert "release-v12 is missing" in missing.stdout
    reg.push_image(unique_repo, "release-v12")
    healthy = await trio.to_thread.run_sync(check)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "v12" in healthy.stdout and "ETA" in healthy.stdout
    for proc in (missing, healthy):
        assert reg.password not in proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr

"""The LCD client against the chain simulator over real HTTP on loopback.

Expected values are derived from the inputs (the real Cosmos Hub captures, the plans the
test schedules), never copied from what the client returns. The decoders are also checked
directly on the captures and on arbitrary JSON: nothing but `MalformedJSON` may escape.
"""

from __future__ import annotations

import base64
import json
import math
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gopher_updater import cadence, chain, chain_gov, chain_json, chain_shapes, rule, rule_records
from gopher_updater.chain import ChainClient
from gopher_updater.chain_errors import (
    ChainError,
    ChainHTTPError,
    ChainInvalidRequest,
    ChainMalformed,
    ChainTimeout,
    ChainUnreachable,
)
from gopher_updater.model import (
    Height,
    Plan,
    PlanAnswer,
    ProposalStatus,
    RetagJob,
    UpgradeProposal,
)
from gopher_updater.testing import chainsim_proposals
from gopher_updater.testing.chainsim import ChainSim, Fault

TIMEOUT = 0.5
BLOCKS_LATEST_PATH = "/cosmos/base/tendermint/v1beta1/blocks/latest"
MARGIN = 0.75  # scheduling slack on a loaded 2-core CI box
UPGRADE_TYPES = {
    "/cosmos.upgrade.v1beta1.MsgSoftwareUpgrade",
    "/cosmos.upgrade.v1beta1.SoftwareUpgradeProposal",
}


def upgrades_in(raw: list[dict[str, Any]], status: ProposalStatus | None) -> set[UpgradeProposal]:
    """What a correct client must find: an independent walk over the raw gov v1 items."""
    found = set()
    for item in raw:
        item_status = ProposalStatus[item["status"].removeprefix("PROPOSAL_STATUS_")]
        if status is not None and item_status != status:
            continue
        for message in item["messages"]:
            inner = message.get("content", message)
            if inner.get("@type") in UPGRADE_TYPES and int(inner["plan"]["height"]) > 0:
                plan = inner["plan"]
                found.add(
                    UpgradeProposal(
                        int(item["id"]),
                        item_status,
                        Plan(plan["name"], int(plan["height"]), plan["info"]),
                    )
                )
    return found


async def start(nursery: trio.Nursery, **kwargs: Any) -> ChainSim:
    sim = ChainSim(**{"height": 1000, "block_time": math.inf, **kwargs})
    await nursery.start(sim.run)
    return sim


# --- plan and heights ---------------------------------------------------------------------


async def test_current_plan_none_then_scheduled(chain: ChainSim) -> None:
    async with ChainClient(chain.url, timeout=5) as client:
        assert await client.current_plan() == PlanAnswer(None, chain.app_height)
        plan = Plan("v18", chain.height + 500, info='{"binaries": {}}')
        chain.schedule_plan(plan.name, plan.height, plan.info)
        assert await client.current_plan() == PlanAnswer(plan, chain.app_height)


@pytest.mark.parametrize("header", ["X-Cosmos-Block-Height", None])
async def test_height_header_variants(nursery: trio.Nursery, header: str | None) -> None:
    sim = await start(nursery, height_header=header)
    async with ChainClient(sim.url, timeout=5) as client:
        expected = None if header is None else sim.app_height
        assert (await client.current_plan()).app_height == expected
        assert (await client.latest_height()).app == expected


async def test_latest_height(chain: ChainSim) -> None:
    chain.advance(7)
    async with ChainClient(chain.url, timeout=5) as client:
        height = await client.latest_height()
    assert (height.block, height.app) == (chain.height, chain.app_height)
    assert height.time is not None and height.time.endswith("Z")


TAGS = rule_records.TagScheme("release-", "prod-")


async def test_halt_shape_is_recognised_and_promoted(chain: ChainSim) -> None:
    """Block store at H, app (header) at H-1, plan still current: the rule fires then only."""
    plan = Plan("v18", chain.height + 5)
    chain.schedule_plan(plan.name, plan.height)
    state = rule_records.WatchState()
    decisions = []
    async with ChainClient(chain.url, timeout=5) as client:
        while True:
            answer = await client.current_plan()
            height = await client.latest_height()
            obs = rule_records.Observation(answer, height, trio.current_time())
            result = rule.step(state, obs, tags=TAGS)
            if isinstance(result.decision, rule_records.ConfirmHalt):
                again = await client.current_plan()
                result = rule.on_confirmed(result.state, result.decision, again)
            state = result.state
            decisions.append((height, result.decision))
            if chain.halted:
                break
            chain.advance(1)
    assert chain.height == plan.height
    assert answer == PlanAnswer(plan, plan.height - 1)
    assert height == Height(plan.height, plan.height - 1, height.time)
    tags = TAGS.for_plan(plan)
    assert isinstance(tags, rule_records.Tags)
    job = RetagJob(plan, tags.source, tags.target)
    assert [d for _, d in decisions if isinstance(d, rule_records.Promote)] == [
        rule_records.Promote(job)
    ]
    assert all(
        not isinstance(d, rule_records.Promote) for h, d in decisions if h.block < plan.height
    )


async def test_applied_height_with_awkward_names(chain: ChainSim) -> None:
    names = ["Signal Proposal to Adopt the Liquidity Module", "v1/2", "..", ".", "a+b=c?d#e%20f"]
    for i, name in enumerate(names):
        chain.applied[name] = 5000 + i
    plan = Plan("v18", chain.height + 3)
    chain.schedule_plan(plan.name, plan.height)
    chain.advance(10)
    chain.apply_plan()
    async with ChainClient(chain.url, timeout=5) as client:
        for name in names:
            assert await client.applied_height(name) == chain.applied[name]
        assert await client.applied_height(plan.name) == plan.height
        assert await client.applied_height("never-scheduled") == 0


# --- proposals ----------------------------------------------------------------------------


async def test_v18_and_legacy_upgrades_found_across_three_pages(
    chain: ChainSim, cosmoshub_proposals: list[dict[str, Any]]
) -> None:
    async with ChainClient(chain.url, timeout=5) as client:
        everything = await client.upgrade_proposals()
        chain.reset_stats()
        passed = await client.upgrade_proposals(ProposalStatus.PASSED)
    assert set(everything) == upgrades_in(cosmoshub_proposals, None)
    assert set(passed) == upgrades_in(cosmoshub_proposals, ProposalStatus.PASSED)
    by_id = {p.id: p for p in passed}
    assert (by_id[937].plan.name, by_id[937].plan.height) == ("v18", 21330500)
    assert (by_id[914].plan.name, by_id[924].plan.name) == ("v16", "v17")
    assert 38 not in by_id  # the height-0 signal proposal is not an upgrade
    assert [p.id for p in everything] == sorted(p.id for p in everything)
    n_passed = sum(1 for p in cosmoshub_proposals if p["status"] == "PROPOSAL_STATUS_PASSED")
    assert chain.stats["gov_v1_proposals"].requests == math.ceil(n_passed / 100)


async def test_every_encoding_is_recognised(nursery: trio.Nursery) -> None:
    sim = await start(nursery)
    upgrades = {
        1: ("v1", Plan("v2", 2000)),
        2: ("v1-legacy", Plan("Signal Proposal v3", 3000)),
    }
    for pid, (encoding, plan) in upgrades.items():
        sim.add_proposal(pid, ProposalStatus.PASSED, plan, encoding=encoding)
    sim.add_proposal(3, ProposalStatus.PASSED, None, encoding="text")
    sim.add_proposal(4, ProposalStatus.PASSED, None, encoding="v1-cancel")
    sim.add_proposal(5, ProposalStatus.PASSED, None, encoding="v1-legacy-cancel")
    sim.add_proposal(6, ProposalStatus.PASSED, Plan("signal", 0), encoding="v1-legacy")
    sim.add_proposal(7, ProposalStatus.VOTING_PERIOD, Plan("v4", 4000), encoding="v1")
    async with ChainClient(sim.url, timeout=5) as client:
        passed = await client.upgrade_proposals(ProposalStatus.PASSED)
        voting = await client.upgrade_proposals(ProposalStatus.VOTING_PERIOD)
    assert passed == [
        UpgradeProposal(pid, ProposalStatus.PASSED, plan)
        for pid, (_encoding, plan) in sorted(upgrades.items())
    ]
    assert voting == [UpgradeProposal(7, ProposalStatus.VOTING_PERIOD, Plan("v4", 4000))]


async def test_v1beta1_fallback_on_501_is_remembered(
    nursery: trio.Nursery, fixtures_dir: Path
) -> None:
    capture = json.loads((fixtures_dir / "gov_v1beta1_proposals_passed_upgrade.json").read_text())
    sim = await start(nursery, gov_v1=False, proposals_v1beta1=capture["proposals"])
    item = capture["proposals"][0]
    plan = item["content"]["plan"]
    expected = [
        UpgradeProposal(
            int(item["proposal_id"]),
            ProposalStatus.PASSED,
            Plan(plan["name"], int(plan["height"]), plan["info"]),
        )
    ]
    async with ChainClient(sim.url, timeout=5) as client:
        assert await client.upgrade_proposals(ProposalStatus.PASSED) == expected
        assert client.gov_v1 is False
        assert await client.newest_upgrade_proposals(ProposalStatus.PASSED) == expected
    assert sim.stats["gov_v1_proposals"].requests == 1  # asked once, then remembered
    assert sim.stats["gov_v1beta1_proposals"].requests == 2


async def test_v1beta1_conversion_of_v1_messages(nursery: trio.Nursery) -> None:
    """SDK v0.46-v0.50 v1beta1: `content` may be a MsgSoftwareUpgrade; a text proposal with
    no message fails the whole page, which must surface as an error, not as "no upgrades"."""
    sim = await start(nursery, gov_v1=False)
    sim.add_proposal(1, ProposalStatus.PASSED, Plan("v2", 2000), encoding="v1")
    sim.add_proposal(2, ProposalStatus.PASSED, Plan("v3", 3000), encoding="v1-legacy")
    sim.add_proposal(3, ProposalStatus.PASSED, None, encoding="v1-cancel")
    async with ChainClient(sim.url, timeout=5) as client:
        found = await client.upgrade_proposals()
        assert [(p.id, p.plan) for p in found] == [(1, Plan("v2", 2000)), (2, Plan("v3", 3000))]
        sim.add_proposal(4, ProposalStatus.PASSED, None, encoding="text")
        with pytest.raises(ChainHTTPError) as failed:
            await client.upgrade_proposals()
    assert failed.value.status == 500 and "exactly one" in failed.value.message


async def test_next_key_with_plus_and_slash_is_percent_encoded(nursery: trio.Nursery) -> None:
    ids = [64494, 64495, 64511, 65535, 65536]
    keys = [base64.b64encode(i.to_bytes(8, "big")).decode() for i in ids]
    assert any("+" in k for k in keys) and any("/" in k for k in keys)  # the test covers both
    sim = await start(nursery)
    for i in ids:
        sim.add_proposal(i, ProposalStatus.PASSED, Plan(f"v{i}", i), encoding="v1")
    async with ChainClient(sim.url, timeout=5) as client:
        found = await client.upgrade_proposals(ProposalStatus.PASSED, page_limit=1)
        newest = await client.newest_upgrade_proposals(want=len(ids), page_limit=1)
    assert [p.id for p in found] == ids
    assert [p.id for p in newest] == sorted(ids, reverse=True)


@pytest.mark.parametrize("page_limit", [100, 7, 1])
async def test_filtered_pagination_bug_still_finds_upgrades(
    nursery: trio.Nursery, cosmoshub_proposals: list[dict[str, Any]], page_limit: int
) -> None:
    sim = await start(nursery, proposals=cosmoshub_proposals, filtered_pagination_bug=True)
    expected = upgrades_in(cosmoshub_proposals, ProposalStatus.PASSED)
    async with ChainClient(sim.url, timeout=5) as client:
        found = await client.upgrade_proposals(ProposalStatus.PASSED, page_limit=page_limit)
        pages = sim.stats["gov_v1_proposals"].requests
        newest = await client.newest_upgrade_proposals(
            ProposalStatus.PASSED, want=3, page_limit=page_limit
        )
    assert set(found) == expected
    assert newest == sorted(expected, key=lambda p: p.id, reverse=True)[:3]
    if page_limit < 100:  # the bug was in play: keyed pages came back short (or empty)
        n_passed = sum(1 for p in cosmoshub_proposals if p["status"] == "PROPOSAL_STATUS_PASSED")
        assert pages > math.ceil(n_passed / page_limit)


async def test_newest_upgrade_is_one_small_request(
    chain: ChainSim, cosmoshub_proposals: list[dict[str, Any]]
) -> None:
    expected = sorted(
        upgrades_in(cosmoshub_proposals, ProposalStatus.PASSED), key=lambda p: p.id, reverse=True
    )
    async with ChainClient(chain.url, timeout=5) as client:
        chain.reset_stats()
        newest = await client.newest_upgrade_proposals(ProposalStatus.PASSED)
        one_page = chain.stats_total()
        assert newest == expected[:1]
        assert one_page.requests == 1
        chain.reset_stats()
        await client.upgrade_proposals(ProposalStatus.PASSED)
        assert chain.stats_total().bytes_out > 2 * one_page.bytes_out
        assert await client.newest_upgrade_proposals(ProposalStatus.PASSED, want=3) == expected[:3]


async def test_idle_poll_costs_one_small_request(chain: ChainSim) -> None:
    """218 proposals on chain, no plan (or a far one): current_plan only, < 1 KB."""
    state = rule_records.WatchState()
    async with ChainClient(chain.url, timeout=5) as client:
        for plan in (None, Plan("v19", chain.height + 1000)):
            if plan is not None:
                chain.schedule_plan(plan.name, plan.height)
            chain.reset_stats()
            answer = await client.current_plan()
            if cadence.needs_latest_block(state, answer):
                await client.latest_height()
            total = chain.stats_total()
            assert (total.requests, total.bytes_out < 1024) == (1, True), total
        # Near H the poll adds blocks/latest, as the rule asks.
        chain.advance(1000 - cadence.NEAR_BLOCKS)
        chain.reset_stats()
        answer = await client.current_plan()
        assert cadence.needs_latest_block(state, answer)
        await client.latest_height()
        assert chain.stats_total().requests == 2


# --- failures -----------------------------------------------------------------------------

FAULTS = [
    (Fault.HTTP_500, ChainHTTPError),
    (Fault.HTTP_503, ChainHTTPError),
    (Fault.HANG, ChainTimeout),
    (Fault.GARBAGE, ChainMalformed),
    (Fault.TRUNCATED, ChainUnreachable),
    (Fault.RESET, ChainUnreachable),
    (Fault.TRICKLE, ChainTimeout),
]
ROUTES = {
    "current_plan": "/cosmos/upgrade/v1beta1/current_plan",
    "blocks_latest": "/cosmos/base/tendermint/v1beta1/blocks/latest",
    "applied_plan": "/cosmos/upgrade/v1beta1/applied_plan/v%201",
    "gov_v1_proposals": "/cosmos/gov/v1/proposals",
}


async def _call(client: ChainClient, route: str) -> object:
    if route == "current_plan":
        return await client.current_plan()
    if route == "blocks_latest":
        return await client.latest_height()
    if route == "applied_plan":
        return await client.applied_height("v 1")
    return await client.upgrade_proposals(ProposalStatus.PASSED)


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize(("fault", "error"), FAULTS, ids=[f.name for f, _ in FAULTS])
async def test_fault_gives_typed_error_within_timeout(
    chain: ChainSim, route: str, fault: Fault, error: type[ChainError]
) -> None:
    chain.set_fault(route, fault)
    async with ChainClient(chain.url, timeout=TIMEOUT) as client:
        started = trio.current_time()
        with pytest.raises(ChainError) as caught:
            await _call(client, route)
        elapsed = trio.current_time() - started
        assert type(caught.value) is error
        assert caught.value.endpoint == ROUTES[route]
        assert str(caught.value).startswith(ROUTES[route])
        assert elapsed < TIMEOUT + MARGIN
        if isinstance(caught.value, ChainHTTPError):
            assert caught.value.status == int(fault.value)
            assert caught.value.code == {500: 13, 503: 14}[caught.value.status]
        # The same client works again once the node behaves.
        chain.set_fault(route, None)
        await _call(client, route)
    assert client.gov_v1 is not False  # only a 501 switches to v1beta1


async def test_connection_refused_is_unreachable_and_hides_credentials() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with ChainClient(f"http://user:s3cret-pw@127.0.0.1:{port}", timeout=TIMEOUT) as client:
        with pytest.raises(ChainUnreachable) as caught:
            await client.current_plan()
    assert "s3cret-pw" not in str(caught.value) and "s3cret-pw" not in repr(caught.value)


async def test_bad_height_header_is_malformed(chain: ChainSim) -> None:
    chain.app_height = "12a"  # type: ignore[assignment]  # what a broken proxy might send
    async with ChainClient(chain.url, timeout=5) as client:
        with pytest.raises(ChainMalformed, match="12a"):
            await client.current_plan()


async def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout"):
        ChainClient("http://127.0.0.1:1", timeout=0)


# --- decoders, on the captures and on arbitrary input -------------------------------------


def test_captures_decode(fixtures_dir: Path) -> None:
    nibiru = fixtures_dir / "derived_upgrade_current_plan_with_plan_nibiru.json"
    raw = json.loads(nibiru.read_text())["plan"]
    assert chain_json.current_plan(nibiru.read_bytes()) == Plan(
        raw["name"], int(raw["height"]), raw["info"]
    )
    empty = fixtures_dir / "derived_upgrade_current_plan_empty.json"
    assert chain_json.current_plan(empty.read_bytes()) is None
    not_applied = fixtures_dir / "derived_upgrade_applied_plan_not_applied.json"
    assert chain_json.applied_height(not_applied.read_bytes()) == 0
    block = fixtures_dir / "tendermint_blocks_latest_astria_metro.json"
    header = json.loads(block.read_text())["block"]["header"]
    decoded_header = chain_json.latest_block(block.read_bytes())
    assert (decoded_header.height, decoded_header.time) == (int(header["height"]), header["time"])
    error = json.loads((fixtures_dir / "error_not_implemented.json").read_text())
    decoded = chain_json.error_body((fixtures_dir / "error_not_implemented.json").read_bytes())
    assert decoded is not None and (decoded.code, decoded.message) == (
        error["code"],
        error["message"],
    )


def test_sdk_block_is_the_fallback(fixtures_dir: Path) -> None:
    body = json.loads((fixtures_dir / "tendermint_blocks_latest_astria_metro.json").read_text())
    del body["block"]
    header = body["sdk_block"]["header"]
    decoded = chain_json.latest_block(json.dumps(body).encode())
    assert (decoded.height, decoded.time) == (int(header["height"]), header["time"])
    with pytest.raises(chain_shapes.MalformedJSON, match="sdk_block"):
        chain_json.latest_block(b'{"block": null, "sdk_block": null}')


@pytest.mark.parametrize(
    "height",
    [
        '"12a"',
        '""',
        '"1.5"',
        "1.5",
        "true",
        '"-1"',
        '" 1"',
        '"1e3"',
        '"9223372036854775808"',
        '"+1"',
        '"١٢"',
        "null",
    ],
)
def test_ints_are_parsed_strictly(height: str) -> None:
    with pytest.raises(chain_shapes.MalformedJSON, match=r"\$\.height"):
        chain_json.applied_height(f'{{"height": {height}}}'.encode())
    with pytest.raises(chain_shapes.MalformedJSON):
        chain_json.current_plan(f'{{"plan": {{"name": "v2", "height": {height}}}}}'.encode())


def test_int64_bounds() -> None:
    top = 2**63 - 1
    assert chain_json.applied_height(f'{{"height": "{top}"}}'.encode()) == top
    with pytest.raises(chain_shapes.MalformedJSON):
        chain_json.applied_height(f'{{"height": "{top + 1}"}}'.encode())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "plan",
                    "name",
                    "height",
                    "info",
                    "block",
                    "sdk_block",
                    "header",
                    "time",
                    "proposals",
                    "pagination",
                    "next_key",
                    "id",
                    "proposal_id",
                    "status",
                    "messages",
                    "content",
                    "@type",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)
DECODERS = [
    chain_json.current_plan,
    chain_json.applied_height,
    chain_json.latest_block,
    chain_json.proposals_v1,
    chain_json.proposals_v1beta1,
]


@settings(max_examples=300, deadline=None)
@given(value=JSON)
def test_decoders_raise_only_malformed_json(value: object) -> None:
    body = json.dumps(value).encode()
    for decode in DECODERS:
        try:
            decode(body)
        except chain_shapes.MalformedJSON as exc:
            assert exc.reason


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_capture_raises_only_malformed_json(
    fixtures_dir: Path, data: st.DataObject
) -> None:
    body = (fixtures_dir / "gov_v1_proposals_passed_upgrade.json").read_bytes()
    start = data.draw(st.integers(0, len(body) - 1))
    end = data.draw(st.integers(start, min(len(body), start + 8)))
    junk = data.draw(st.binary(max_size=4))
    mutated = body[:start] + junk + body[end:]
    try:
        page = chain_json.proposals_v1(mutated)
    except chain_shapes.MalformedJSON:
        return
    assert all(p.plan.height > 0 for p in page.upgrades)


# --- hostile chain data never escapes as anything but ChainError (issue 9.3) --------------

BAD_NAMES = ["", "v1\x00", "v1\nv2", "\x7f", "v\ud800", "x" * 5000, "é" * 600]


@pytest.mark.parametrize("name", BAD_NAMES, ids=range(len(BAD_NAMES)))
async def test_unusable_plan_name_is_refused_before_sending(chain: ChainSim, name: str) -> None:
    async with ChainClient(chain.url, timeout=5) as client:
        with pytest.raises(ChainInvalidRequest) as caught:
            await client.applied_height(name)
    assert caught.value.endpoint == "/cosmos/upgrade/v1beta1/applied_plan/{name}"
    assert caught.value.origin == chain.url
    assert chain.stats_total().requests == 0


async def test_awkward_plan_names_reach_the_lcd_as_one_segment(chain: ChainSim) -> None:
    names = ["a/../../current_plan", "v2?x=1", "v2#frag", "%2e%2e", "日本 v3", "...", "x" * 900]
    for i, name in enumerate(names):
        chain.applied[name] = 7000 + i
    async with ChainClient(chain.url, timeout=5) as client:
        answers = [await client.applied_height(name) for name in names]
    assert answers == [chain.applied[name] for name in names]
    assert chain.stats["applied_plan"].requests == len(names)
    assert chain.stats["current_plan"].requests == 0


def mock_client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def page_body(ids: list[int], next_key: str | None) -> bytes:
    items = [
        chainsim_proposals.make_v1_proposal(i, ProposalStatus.PASSED, None, "text") for i in ids
    ]
    return json.dumps({"proposals": items, "pagination": {"next_key": next_key}}).encode()


@pytest.mark.parametrize(
    "next_key",
    ["AA\x00AA==", "not base64!", "QUFB" * 1000, "\ud800", "AAAAAAAAA x0="],
    ids=["nul", "junk", "huge", "surrogate", "space"],
)
async def test_hostile_next_key_is_malformed(next_key: str) -> None:
    bodies = [page_body([1], next_key)]
    async with (
        mock_client(lambda _r: httpx.Response(200, content=bodies[0])) as http,
        ChainClient("http://lcd.test:1317", timeout=5, client=http) as client,
    ):
        with pytest.raises(ChainMalformed, match="next_key") as caught:
            await client.upgrade_proposals()
    assert caught.value.origin == "http://lcd.test:1317"


async def test_repeated_next_key_ends_the_walk() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=page_body([len(requests)], "AAAAAAAAAAE="))

    async with (
        mock_client(handler) as http,
        ChainClient("http://lcd.test", timeout=5, client=http) as client,
    ):
        with pytest.raises(ChainMalformed, match="loops"):
            await client.newest_upgrade_proposals(ProposalStatus.PASSED)
    assert len(requests) == 2  # the first page, then the page that repeated its key


async def test_endless_fresh_next_keys_end_after_max_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_gov, "MAX_PAGES", 25)
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        key = base64.b64encode(len(requests).to_bytes(8, "big")).decode()
        return httpx.Response(200, content=page_body([], key))

    async with (
        mock_client(handler) as http,
        ChainClient("http://lcd.test", timeout=5, client=http) as client,
    ):
        with pytest.raises(ChainMalformed, match="pages"):
            await client.upgrade_proposals()
    assert len(requests) == chain_gov.MAX_PAGES


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_oversized_answer_is_malformed(declared: bool) -> None:
    body = b'{"plan": null, "pad": "' + b"x" * chain.MAX_BODY + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    def handler(_request: httpx.Request) -> httpx.Response:
        if declared:
            return httpx.Response(200, content=body)
        return httpx.Response(200, content=chunks())  # no Content-Length: read, then refused

    async with (
        mock_client(handler) as http,
        ChainClient("http://lcd.test", timeout=5, client=http) as client,
    ):
        with pytest.raises(ChainMalformed, match="larger than"):
            await client.current_plan()


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"plan": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001,
        b'{"height": "1' + b"0" * 50_000 + b'"}',
        b'{"height": 1' + b"0" * 50_000 + b"}",
        b'{"height": NaN}',
        b'{"height": 1e999}',
        b'{"height": "-5"}',
        b"\xff\xfe",
    ],
    ids=["deep-list", "deep-object", "huge-string", "huge-int", "nan", "inf", "negative", "bytes"],
)
async def test_hostile_bodies_are_malformed(body: bytes) -> None:
    async with (
        mock_client(lambda _r: httpx.Response(200, content=body)) as http,
        ChainClient("http://lcd.test", timeout=5, client=http) as client,
    ):
        for ask in (client.current_plan, client.latest_height, client.upgrade_proposals):
            with pytest.raises(ChainMalformed):
                await ask()
        with pytest.raises(ChainMalformed):
            await client.applied_height("v2")


async def test_error_body_nested_deeply_is_still_an_http_error() -> None:
    body = b'{"message": ' + b"[" * 100_000
    async with (
        mock_client(lambda _r: httpx.Response(500, content=body)) as http,
        ChainClient("http://lcd.test", timeout=5, client=http) as client,
    ):
        with pytest.raises(ChainHTTPError) as caught:
            await client.current_plan()
    assert caught.value.status == 500 and caught.value.code is None


# --- credentials (RPC_URL with userinfo, or explicit auth) -------------------------------


async def test_auth_is_sent_on_every_request_and_never_shown() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        if request.url.path.endswith("blocks/latest"):
            return httpx.Response(503, json={"code": 14, "message": "unavailable"})
        return httpx.Response(200, json={"plan": None, "proposals": [], "height": "0"})

    auth = httpx.BasicAuth("gopher", "s3cret-pw")
    expected = auth._auth_header
    for url, kwargs in (
        ("https://lcd.test", {"auth": auth}),
        ("https://gopher:s3cret-pw@lcd.test", {}),
    ):
        seen.clear()
        async with (
            mock_client(handler) as http,
            ChainClient(url, timeout=5, client=http, **kwargs) as client,
        ):
            await client.current_plan()
            await client.applied_height("v2")
            await client.upgrade_proposals()
            with pytest.raises(ChainHTTPError) as caught:
                await client.latest_height()
        assert seen == [expected] * 4
        assert client.origin == "https://lcd.test:443"
        assert str(caught.value).startswith(f"{BLOCKS_LATEST_PATH} on https://lcd.test:443: ")
        assert "s3cret" not in str(caught.value) and "gopher" not in repr(caught.value)


# --- governance listings resume from the previous one (issue 13.6) ------------------------


def old_upgrades_chain(n: int, upgrades: dict[int, Plan]) -> ChainSim:
    """`n` passed proposals; only the ids in `upgrades` carry a plan (the worst case)."""
    sim = ChainSim(height=1000, block_time=math.inf)
    for pid in range(1, n + 1):
        plan = upgrades.get(pid)
        sim.add_proposal(pid, ProposalStatus.PASSED, plan, encoding="v1" if plan else "text")
    return sim


def newest(upgrades: dict[int, Plan], want: int) -> tuple[UpgradeProposal, ...]:
    ordered = sorted(upgrades.items(), reverse=True)[:want]
    return tuple(UpgradeProposal(pid, ProposalStatus.PASSED, plan) for pid, plan in ordered)


async def test_second_listing_stops_at_the_first(nursery: trio.Nursery) -> None:
    n, page_limit = 2000, 20
    upgrades = {1: Plan("v2", 2000), 2: Plan("v3", 3000), 3: Plan("v4", 4000)}
    sim = old_upgrades_chain(n, upgrades)
    await nursery.start(sim.run)
    async with ChainClient(sim.url, timeout=5) as client:
        first = await client.newest_upgrades(ProposalStatus.PASSED, want=3, page_limit=page_limit)
        full = sim.stats_total()
        assert first.upgrades == newest(upgrades, 3)
        assert (first.newest_id, first.pages, full.requests) == (n, n // page_limit, first.pages)
        sim.reset_stats()
        second = await client.newest_upgrades(
            ProposalStatus.PASSED, want=3, page_limit=page_limit, since=first
        )
        assert second.upgrades == first.upgrades
        assert (second.pages, sim.stats_total().requests) == (1, 1)
        assert sim.stats_total().bytes_out * 50 < full.bytes_out
        # A new upgrade passes: found on the first page, merged with what was known.
        upgrades[n + 1] = Plan("v5", 5000)
        sim.add_proposal(n + 1, ProposalStatus.PASSED, upgrades[n + 1])
        sim.reset_stats()
        third = await client.newest_upgrades(
            ProposalStatus.PASSED, want=3, page_limit=page_limit, since=second
        )
        assert third.upgrades == newest(upgrades, 3)
        assert (third.newest_id, sim.stats_total().requests) == (n + 1, 1)


async def test_listing_reaches_down_to_reopened_proposals(nursery: trio.Nursery) -> None:
    n, page_limit, late = 300, 20, 150
    upgrades = {1: Plan("v2", 2000)}
    sim = old_upgrades_chain(n, upgrades)
    sim.add_proposal(late, ProposalStatus.VOTING_PERIOD, Plan("v9", 9000))
    await nursery.start(sim.run)
    async with ChainClient(sim.url, timeout=5) as client:
        first = await client.newest_upgrades(ProposalStatus.PASSED, want=2, page_limit=page_limit)
        voting = await client.upgrade_proposals(ProposalStatus.VOTING_PERIOD)
        assert first.upgrades == newest(upgrades, 2)
        assert [p.id for p in voting] == [late]
        # The voting upgrade passes after younger proposals did: below `newest_id`.
        upgrades[late] = Plan("v9", 9000)
        sim.add_proposal(late, ProposalStatus.PASSED, upgrades[late])
        sim.reset_stats()
        second = await client.newest_upgrades(
            ProposalStatus.PASSED,
            want=2,
            page_limit=page_limit,
            since=first,
            reopen=frozenset(p.id for p in voting),
        )
    assert second.upgrades == newest(upgrades, 2)
    assert sim.stats_total().requests == math.ceil((n - late + 1) / page_limit)
    assert second.pages < first.pages


@pytest.mark.parametrize("change", ["status", "want", "voting", "reset"])
async def test_listing_that_cannot_resume_walks_in_full(nursery: trio.Nursery, change: str) -> None:
    n, page_limit = 200, 20
    upgrades = {1: Plan("v2", 2000), 2: Plan("v3", 3000)}
    sim = old_upgrades_chain(n, upgrades)
    await nursery.start(sim.run)
    async with ChainClient(sim.url, timeout=5) as client:
        first = await client.newest_upgrades(ProposalStatus.PASSED, want=1, page_limit=page_limit)
        status, want = ProposalStatus.PASSED, 1
        if change == "status":
            status = ProposalStatus.REJECTED
        elif change == "want":
            want = 2
        elif change == "voting":
            status = ProposalStatus.VOTING_PERIOD
            first = attrs.evolve(first, status=status)
        else:  # the LCD now serves a younger chain (a testnet reset): ids went down
            sim = old_upgrades_chain(n // 2, upgrades)
            await nursery.start(sim.run)
        sim.reset_stats()
        async with ChainClient(sim.url, timeout=5) as fresh:
            again = await fresh.newest_upgrades(
                status, want=want, page_limit=page_limit, since=first
            )
    expected = newest(upgrades, want) if status == ProposalStatus.PASSED else ()
    assert again.upgrades == expected
    assert again.pages == sim.stats_total().requests
    assert again.pages == math.ceil(sim_ids(sim, status) / page_limit)


def sim_ids(sim: ChainSim, status: ProposalStatus) -> int:
    """How many proposals the sim lists with `status` (what a full walk must read)."""
    items = sim.gov.v1.values()
    return sum(1 for item in items if item["status"] == f"PROPOSAL_STATUS_{status.name}") or 1

"""The chain simulator is the ground truth for every chain test: check it against the captures
and the SDK's rules with a plain httpx client over real loopback HTTP."""

from __future__ import annotations

import base64
import itertools
import json
import math
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from gopher_updater.model import Plan, ProposalStatus
from gopher_updater.testing import chainsim_lcd
from gopher_updater.testing.chainsim import ChainSim, Fault

V1 = "/cosmos/gov/v1/proposals"
V1BETA1 = "/cosmos/gov/v1beta1/proposals"
CURRENT_PLAN = "/cosmos/upgrade/v1beta1/current_plan"
BLOCKS_LATEST = "/cosmos/base/tendermint/v1beta1/blocks/latest"
HEIGHT_HEADER = "Grpc-Metadata-X-Cosmos-Block-Height"


def fixture_json(fixtures_dir: Path, name: str) -> Any:
    return json.loads((fixtures_dir / name).read_text())


@pytest.fixture
async def client(chain: ChainSim) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=chain.url, timeout=5) as http:
        yield http


async def start(nursery: trio.Nursery, sim: ChainSim) -> httpx.AsyncClient:
    """Run `sim` in the test's nursery; the caller closes the returned client."""
    url = await nursery.start(sim.run)
    return httpx.AsyncClient(base_url=url, timeout=5)


async def follow(
    http: httpx.AsyncClient, path: str, params: dict[str, str]
) -> tuple[list[list[dict[str, Any]]], list[str | None]]:
    """Every page of a listing, following next_key until null (never stopping on empty)."""
    pages: list[list[dict[str, Any]]] = []
    keys: list[str | None] = []
    key: str | None = None
    while True:
        query = dict(params) if key is None else {**params, "pagination.key": key}
        response = await http.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["proposals"])
        key = body["pagination"]["next_key"]
        keys.append(key)
        if key is None:
            return pages, keys


def ids(items: list[dict[str, Any]], field: str = "id") -> list[int]:
    return [int(item[field]) for item in items]


# --- fidelity to the captures ------------------------------------------------------------


def test_embedded_block_template_is_the_capture(fixtures_dir: Path) -> None:
    capture = fixture_json(fixtures_dir, "tendermint_blocks_latest_astria_metro.json")
    assert capture == chainsim_lcd.BLOCK_TEMPLATE
    not_implemented = fixture_json(fixtures_dir, "error_not_implemented.json")
    assert not_implemented == chainsim_lcd.NOT_IMPLEMENTED_BODY


async def test_offset_pages_reproduce_the_captured_pages(
    client: httpx.AsyncClient, fixtures_dir: Path
) -> None:
    for number, offset in ((1, 0), (2, 100), (3, 200)):
        params = {"pagination.limit": "100", "pagination.offset": str(offset)}
        response = await client.get(V1, params={**params, "pagination.count_total": "1"})
        capture = fixture_json(fixtures_dir, f"gov_v1_proposals_cosmoshub_page{number}_of3.json")
        assert response.json() == capture


async def test_unfiltered_listing_following_next_key(client: httpx.AsyncClient) -> None:
    pages, keys = await follow(client, V1, {"pagination.limit": "100"})
    all_ids = [i for page in pages for i in ids(page)]
    assert len(all_ids) == 218
    assert all_ids == sorted(set(all_ids))
    assert keys[0] == "AAAAAAAAAx0="
    assert int.from_bytes(base64.b64decode(keys[0]), "big") == 797
    assert [len(p) for p in pages] == [100, 100, 18]


async def test_total_is_only_counted_on_request(client: httpx.AsyncClient) -> None:
    counted = (await client.get(V1)).json()["pagination"]  # no limit: counting forced on
    uncounted = (await client.get(V1, params={"pagination.limit": "100"})).json()["pagination"]
    assert counted == {"next_key": "AAAAAAAAAx0=", "total": "218"}
    assert uncounted == {"next_key": "AAAAAAAAAx0=", "total": "0"}


async def test_status_filter_passed(client: httpx.AsyncClient) -> None:
    pages, _ = await follow(client, V1, {"proposal_status": "3"})
    passed = [item for page in pages for item in page]
    assert len(passed) == 130
    assert {item["status"] for item in passed} == {"PROPOSAL_STATUS_PASSED"}
    assert ids(pages[0])[-1] == 854  # the 100th passed: v15..v18 are all on page 2
    assert {885, 914, 924, 937} <= set(ids(passed))
    unfiltered = (await client.get(V1, params={"proposal_status": "0"})).json()
    assert len(unfiltered["proposals"]) == 100


async def test_reverse_gives_newest_first(client: httpx.AsyncClient) -> None:
    params = {"pagination.reverse": "true", "pagination.limit": "5"}
    first = (await client.get(V1, params=params)).json()
    assert ids(first["proposals"]) == [937, 936, 935, 934, 933]
    pages, _ = await follow(client, V1, params)
    all_ids = [i for page in pages for i in ids(page)]
    assert all_ids == sorted(set(all_ids), reverse=True)
    assert len(all_ids) == 218


async def test_offset(client: httpx.AsyncClient) -> None:
    response = await client.get(V1, params={"pagination.offset": "200", "pagination.limit": "100"})
    body = response.json()
    assert ids(body["proposals"])[0] == 917
    assert len(body["proposals"]) == 18
    assert body["pagination"]["next_key"] is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"proposal_status": "PROPOSAL_STATUS_PASSED"},
            'strconv.ParseInt: parsing "PROPOSAL_STATUS_PASSED": invalid syntax',
        ),
        (
            {"pagination.key": "AAAAAAAAAx0=", "pagination.offset": "5"},
            "invalid request, either offset or key is expected, got both",
        ),
        ({"pagination.limit": "-1"}, 'strconv.ParseUint: parsing "-1": invalid syntax'),
        ({"pagination.reverse": "yes"}, 'strconv.ParseBool: parsing "yes": invalid syntax'),
    ],
)
async def test_bad_parameters_are_code_3(
    client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    response = await client.get(V1, params=params)
    assert response.status_code == 400
    assert response.json() == {"code": 3, "message": message, "details": []}


async def test_unencoded_next_key_is_rejected_like_the_sdk(client: httpx.AsyncClient) -> None:
    key = base64.b64encode((1000).to_bytes(8, "big")).decode()
    assert key == "AAAAAAAAA+g="
    raw = await client.get(f"{V1}?pagination.key={key}")  # '+' arrives as a space
    assert raw.status_code == 400
    assert raw.json()["message"] == "illegal base64 data at input byte 9"
    encoded = await client.get(V1, params={"pagination.key": "AAAAAAAAA5U="})
    assert ids(encoded.json()["proposals"])[0] == 917


async def test_gov_v1_missing_answers_the_real_501(
    nursery: trio.Nursery, fixtures_dir: Path
) -> None:
    sim = ChainSim(block_time=math.inf, gov_v1=False)
    async with await start(nursery, sim) as http:
        for path in (V1, "/cosmos/gov/v1/params/voting", "/no/such/route"):
            response = await http.get(path)
            assert response.status_code == 501
            assert response.json() == fixture_json(fixtures_dir, "error_not_implemented.json")
            assert HEIGHT_HEADER not in response.headers
        assert sim.stats["gov_v1_proposals"].requests == 1
        assert sim.stats["unknown"].requests == 2


# --- v1beta1 -----------------------------------------------------------------------------


async def test_v1beta1_conversion_and_whole_page_failure(client: httpx.AsyncClient) -> None:
    first = await client.get(V1BETA1, params={"pagination.limit": "100"})
    assert first.status_code == 200
    item = first.json()["proposals"][0]
    assert item["proposal_id"] == "1"
    assert item["content"]["@type"] == "/cosmos.gov.v1beta1.TextProposal"
    assert set(item["final_tally_result"]) == {"yes", "abstain", "no", "no_with_veto"}
    # Page 2 holds proposal 916 with `messages: []`: the whole page fails.
    second = await client.get(
        V1BETA1, params={"pagination.limit": "100", "pagination.key": "AAAAAAAAAx0="}
    )
    assert second.status_code == 500
    body = second.json()
    assert body["code"] == 2
    assert (
        "can't convert a gov/v1 Proposal to gov/v1beta1 Proposal when amount of proposal "
        "messages not exactly one"
    ) in body["message"]
    # Single proposals around it convert: native MsgSoftwareUpgrade and legacy content.
    native = await client.get(
        V1BETA1, params={"pagination.key": "AAAAAAAAA6k=", "pagination.limit": "1"}
    )
    content = native.json()["proposals"][0]["content"]
    assert content["@type"] == "/cosmos.upgrade.v1beta1.MsgSoftwareUpgrade"
    assert content["plan"]["name"] == "v18"
    legacy = await client.get(
        V1BETA1, params={"pagination.key": "AAAAAAAAA5I=", "pagination.limit": "1"}
    )
    content = legacy.json()["proposals"][0]["content"]
    assert content["@type"] == "/cosmos.upgrade.v1beta1.SoftwareUpgradeProposal"
    assert content["plan"]["name"] == "v16"


async def test_v1beta1_verbatim_items(nursery: trio.Nursery, fixtures_dir: Path) -> None:
    bitsong = fixture_json(fixtures_dir, "gov_v1beta1_proposals_passed_upgrade.json")["proposals"]
    sim = ChainSim(block_time=math.inf, proposals_v1beta1=bitsong, gov_v1=False)
    sim.add_proposal(40, ProposalStatus.VOTING_PERIOD, Plan("v016", 17_000_000), encoding="v1")
    async with await start(nursery, sim) as http:
        body = (await http.get(V1BETA1, params={"proposal_status": "3"})).json()
        assert body["proposals"] == bitsong
        both = (await http.get(V1BETA1)).json()["proposals"]
        assert ids(both, "proposal_id") == [34, 40]
        assert both[1]["content"]["@type"] == "/cosmos.upgrade.v1beta1.SoftwareUpgradeProposal"
        assert both[1]["content"]["plan"]["height"] == "17000000"
        assert (await http.get(V1)).status_code == 501


async def test_added_proposal_encodings(nursery: trio.Nursery) -> None:
    sim = ChainSim(block_time=math.inf)
    plan = Plan("v2", 1200, '{"binaries":{}}')
    sim.add_proposal(1, ProposalStatus.PASSED, plan, encoding="v1")
    sim.add_proposal(2, ProposalStatus.PASSED, plan, encoding="v1-legacy")
    sim.add_proposal(3, ProposalStatus.PASSED, None, encoding="v1-cancel")
    sim.add_proposal(4, ProposalStatus.DEPOSIT_PERIOD, None, encoding="text")
    with pytest.raises(ValueError, match="needs a plan"):
        sim.add_proposal(5, ProposalStatus.PASSED, None, encoding="v1")
    async with await start(nursery, sim) as http:
        items = (await http.get(V1)).json()["proposals"]
        plan_json = {
            "name": "v2",
            "time": "0001-01-01T00:00:00Z",
            "height": "1200",
            "info": '{"binaries":{}}',
            "upgraded_client_state": None,
        }
        assert items[0]["messages"][0]["@type"] == "/cosmos.upgrade.v1beta1.MsgSoftwareUpgrade"
        assert items[0]["messages"][0]["plan"] == plan_json
        assert items[1]["messages"][0]["@type"] == "/cosmos.gov.v1.MsgExecLegacyContent"
        assert items[1]["messages"][0]["content"]["plan"] == plan_json
        assert items[2]["messages"] == [
            {
                "@type": "/cosmos.upgrade.v1beta1.MsgCancelUpgrade",
                "authority": chainsim_lcd.GOV_AUTHORITY,
            }
        ]
        assert items[3]["messages"] == []
        assert items[3]["voting_start_time"] is None
        assert items[3]["status"] == "PROPOSAL_STATUS_DEPOSIT_PERIOD"
        page = await http.get(V1BETA1, params={"pagination.limit": "3"})
        contents = [p["content"]["@type"] for p in page.json()["proposals"]]
        assert contents == [
            "/cosmos.upgrade.v1beta1.MsgSoftwareUpgrade",
            "/cosmos.upgrade.v1beta1.SoftwareUpgradeProposal",
            "/cosmos.upgrade.v1beta1.MsgCancelUpgrade",
        ]
        assert (await http.get(V1BETA1)).status_code == 500  # the text proposal is on the page


# --- the v0.50 filtered-pagination bug ---------------------------------------------------


def sparse_passed_chain(*, bug: bool) -> ChainSim:
    sim = ChainSim(block_time=math.inf, filtered_pagination_bug=bug)
    for i in range(1, 21):
        status = ProposalStatus.PASSED if i in (1, 20) else ProposalStatus.REJECTED
        sim.add_proposal(i, status, Plan(f"v{i}", 10_000 + i))
    return sim


async def test_filtered_pagination_bug_gives_empty_pages(nursery: trio.Nursery) -> None:
    params = {"proposal_status": "3", "pagination.limit": "1"}
    buggy = sparse_passed_chain(bug=True)
    async with await start(nursery, buggy) as http:
        first = (await http.get(V1, params=params)).json()
        assert ids(first["proposals"]) == [1]
        second = (
            await http.get(V1, params={**params, "pagination.key": first["pagination"]["next_key"]})
        ).json()
        assert second["proposals"] == []
        assert second["pagination"]["next_key"] is not None
        pages, _ = await follow(http, V1, params)
        assert [i for page in pages for i in ids(page)] == [1, 20]
        assert len(pages) > 10  # one scanned item per page
        skipped = (await http.get(V1, params={**params, "pagination.offset": "2"})).json()
        assert ids(skipped["proposals"]) == [20]  # the offset skipped raw items, not matches
    fixed = sparse_passed_chain(bug=False)
    async with await start(nursery, fixed) as http:
        pages, _ = await follow(http, V1, params)
        assert [ids(page) for page in pages] == [[1], [20]]
        skipped = (await http.get(V1, params={**params, "pagination.offset": "2"})).json()
        assert skipped["proposals"] == []


# --- x/upgrade and the halt --------------------------------------------------------------


async def get_height(http: httpx.AsyncClient) -> tuple[int, int]:
    response = await http.get(BLOCKS_LATEST)
    body = response.json()
    assert body["block"]["header"]["height"] == body["sdk_block"]["header"]["height"]
    return int(body["block"]["header"]["height"]), int(response.headers[HEIGHT_HEADER])


async def test_current_plan_shapes(
    chain: ChainSim, client: httpx.AsyncClient, fixtures_dir: Path
) -> None:
    empty = await client.get(CURRENT_PLAN)
    assert empty.content == b'{"plan":null}'
    assert empty.json() == fixture_json(fixtures_dir, "derived_upgrade_current_plan_empty.json")
    nibiru = fixture_json(fixtures_dir, "derived_upgrade_current_plan_with_plan_nibiru.json")
    chain.plan = Plan(nibiru["plan"]["name"], 8375044, nibiru["plan"]["info"])
    assert (await client.get(CURRENT_PLAN)).json() == nibiru


async def test_blocks_latest_shape(
    chain: ChainSim, client: httpx.AsyncClient, fixtures_dir: Path
) -> None:
    capture = fixture_json(fixtures_dir, "tendermint_blocks_latest_astria_metro.json")
    chain.advance(2)
    response = await client.get(BLOCKS_LATEST)
    body = response.json()
    assert response.headers[HEIGHT_HEADER] == "1002"
    assert response.headers["content-type"] == "application/json"
    assert body.keys() == capture.keys()
    for key in ("block", "sdk_block"):
        assert body[key].keys() == capture[key].keys()
        assert body[key]["header"]["height"] == "1002"
        assert body[key]["last_commit"]["height"] == "1001"
        assert body[key]["header"]["time"].endswith("Z")
        assert body[key]["header"]["time"] != capture[key]["header"]["time"]
    assert body["block"]["header"]["last_block_id"]["hash"] != body["block_id"]["hash"]
    assert (await client.get("/cosmos/base/tendermint/v1beta1/syncing")).json() == {
        "syncing": False
    }


async def test_halt_shape_and_apply(chain: ChainSim, client: httpx.AsyncClient) -> None:
    chain.schedule_plan("v2", 1003, "info")
    chain.advance(10)
    assert chain.height == 1003 and chain.halted
    assert await get_height(client) == (1003, 1002)
    plan = (await client.get(CURRENT_PLAN)).json()["plan"]
    assert (plan["name"], plan["height"]) == ("v2", "1003")
    applied = "/cosmos/upgrade/v1beta1/applied_plan/v2"
    assert (await client.get(applied)).json() == {"height": "0"}
    chain.apply_plan()
    assert (await client.get(CURRENT_PLAN)).json() == {"plan": None}
    assert (await client.get(applied)).json() == {"height": "1003"}
    assert await get_height(client) == (1003, 1003)
    chain.advance()
    assert await get_height(client) == (1004, 1004)
    assert chain.applied == {"v2": 1003}


async def test_cancel_and_reschedule(chain: ChainSim, client: httpx.AsyncClient) -> None:
    chain.schedule_plan("v2", 1010)
    chain.schedule_plan("v2", 1020)
    assert (await client.get(CURRENT_PLAN)).json()["plan"]["height"] == "1020"
    chain.schedule_plan("v3", 1015)  # one plan at a time: overwritten
    assert (await client.get(CURRENT_PLAN)).json()["plan"]["name"] == "v3"
    chain.cancel_plan()
    assert (await client.get(CURRENT_PLAN)).json() == {"plan": None}
    with pytest.raises(ValueError, match="in the past"):
        chain.schedule_plan("v4", 1000)
    chain.applied["v1"] = 500
    with pytest.raises(ValueError, match="already been completed"):
        chain.schedule_plan("v1", 2000)
    with pytest.raises(ValueError, match="no upgrade plan"):
        chain.apply_plan()
    chain.schedule_plan("v5", 1002)
    with pytest.raises(ValueError, match="BINARY UPDATED BEFORE TRIGGER"):
        chain.apply_plan()
    chain.advance(5)
    chain.cancel_plan()  # cancelled while halted: production resumes
    chain.advance()
    assert chain.height == 1003


async def test_applied_plan_name_with_spaces(chain: ChainSim, client: httpx.AsyncClient) -> None:
    name = "Signal Proposal to Adopt the Liquidity Module/v2"
    chain.schedule_plan(name, 1001)
    chain.advance()
    chain.apply_plan()
    response = await client.get(
        f"/cosmos/upgrade/v1beta1/applied_plan/{urllib.parse.quote(name, safe='')}"
    )
    assert response.json() == {"height": "1001"}
    other = await client.get("/cosmos/upgrade/v1beta1/applied_plan/Signal%20Proposal")
    assert other.json() == {"height": "0"}


async def test_block_production_in_real_time(nursery: trio.Nursery) -> None:
    sim = ChainSim(height=10, block_time=0.02)
    sim.schedule_plan("v2", 15)
    async with await start(nursery, sim) as http:
        with trio.fail_after(3):
            await sim.wait_until(lambda s: s.halted)
        await trio.sleep(0.1)  # several block times: the halt holds
        assert await get_height(http) == (15, 14)
        times = [sim.height_reached_at[h] for h in range(10, 16)]
        assert times == sorted(times)
        sim.apply_plan()
        with trio.fail_after(3):
            await sim.wait_until(lambda s: s.height >= 17)
        assert (await get_height(http))[1] >= 17


async def test_block_production_under_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    sim = ChainSim(height=100, block_time=6.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        start = trio.current_time()
        await trio.sleep(60.5)
        assert sim.height == 110
        assert sim.height_reached_at[105] - start == pytest.approx(30.0)
        sim.schedule_plan("v2", 115)
        await trio.sleep(600)
        assert (sim.height, sim.app_height) == (115, 114)
        sim.block_time = math.inf
        sim.apply_plan()
        await trio.sleep(600)
        assert sim.height == 115
        sim.block_time = 1.0
        await trio.sleep(3.5)
        assert sim.height == 118
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("header", ["X-Cosmos-Block-Height", None])
async def test_height_header_variants(nursery: trio.Nursery, header: str | None) -> None:
    sim = ChainSim(height=77, block_time=math.inf, height_header=header)
    async with await start(nursery, sim) as http:
        response = await http.get(CURRENT_PLAN)
        assert HEIGHT_HEADER not in response.headers
        if header is None:
            assert "X-Cosmos-Block-Height" not in response.headers
        else:
            assert response.headers[header] == "77"


# --- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"), [(Fault.HTTP_500, 500, 13), (Fault.HTTP_503, 503, 14)]
)
async def test_fault_http_errors(
    chain: ChainSim, client: httpx.AsyncClient, fault: Fault, status: int, code: int
) -> None:
    chain.set_fault("current_plan", fault, count=2)
    for _ in range(2):
        response = await client.get(CURRENT_PLAN)
        assert response.status_code == status
        assert response.json()["code"] == code
    assert (await client.get(CURRENT_PLAN)).status_code == 200
    assert chain.stats["current_plan"].requests == 3


async def test_fault_hang(chain: ChainSim) -> None:
    chain.set_fault("blocks_latest", Fault.HANG)
    async with httpx.AsyncClient(base_url=chain.url, timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(BLOCKS_LATEST)
        assert (await http.get(CURRENT_PLAN)).status_code == 200  # other routes unaffected


async def test_fault_garbage(chain: ChainSim, client: httpx.AsyncClient) -> None:
    chain.set_fault("*", Fault.GARBAGE)
    response = await client.get(CURRENT_PLAN)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html"
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.parametrize("path", [CURRENT_PLAN, V1])  # Content-Length and (normally) chunked
async def test_fault_truncated(chain: ChainSim, client: httpx.AsyncClient, path: str) -> None:
    chain.set_fault("*", Fault.TRUNCATED, count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get(path)
    assert (await client.get(path)).status_code == 200


async def test_fault_reset(chain: ChainSim, client: httpx.AsyncClient) -> None:
    chain.set_fault("gov_v1_proposals", Fault.RESET, count=1)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        await client.get(V1)
    assert (await client.get(V1)).status_code == 200


async def test_fault_trickle(chain: ChainSim, client: httpx.AsyncClient) -> None:
    chain.set_fault("current_plan", Fault.TRICKLE)
    received = b""
    with trio.move_on_after(1.2) as scope:
        async with client.stream("GET", CURRENT_PLAN) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                received += chunk
    assert scope.cancelled_caught
    assert 1 <= len(received) <= 3
    assert chain.stats["current_plan"].bytes_out > len(received)


async def test_fault_rate_is_seeded(nursery: trio.Nursery) -> None:
    patterns = []
    for _ in range(2):
        sim = ChainSim(block_time=math.inf, seed=7)
        sim.set_fault("syncing", Fault.HTTP_503, rate=0.5)
        async with await start(nursery, sim) as http:
            statuses = [
                (await http.get("/cosmos/base/tendermint/v1beta1/syncing")).status_code
                for _ in range(30)
            ]
        patterns.append(statuses)
    assert patterns[0] == patterns[1]
    assert set(patterns[0]) == {200, 503}
    with pytest.raises(ValueError, match="unknown route"):
        sim.set_fault("nope", Fault.RESET)


# --- connections and stats ---------------------------------------------------------------


async def test_keep_alive_and_concurrency(chain: ChainSim) -> None:
    async with httpx.AsyncClient(
        base_url=chain.url, limits=httpx.Limits(max_connections=1)
    ) as http:
        for _ in range(5):
            assert (await http.get(CURRENT_PLAN)).status_code == 200
    assert chain.connections == 1
    results: list[int] = []

    async def one(http: httpx.AsyncClient) -> None:
        results.append((await http.get(V1, params={"pagination.limit": "3"})).status_code)

    async with (
        httpx.AsyncClient(base_url=chain.url, limits=httpx.Limits(max_connections=50)) as http,
        trio.open_nursery() as nursery,
    ):
        for _ in range(50):
            nursery.start_soon(one, http)
    assert results == [200] * 50


async def test_large_bodies_are_chunked_like_go(client: httpx.AsyncClient) -> None:
    big = await client.get(V1)
    assert big.headers.get("transfer-encoding") == "chunked"
    small = await client.get(CURRENT_PLAN)
    assert small.headers["content-length"] == str(len(small.content))


async def test_stats_count_requests_and_exact_bytes(chain: ChainSim) -> None:
    host, port = chain.url.removeprefix("http://").split(":")
    received = b""
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        request = f"GET {CURRENT_PLAN} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        await stream.send_all(request.encode())
        while data := await stream.receive_some(65536):
            received += data
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(b'{"plan":null}')
    assert chain.stats["current_plan"].requests == 1
    assert chain.stats["current_plan"].bytes_out == len(received)
    async with httpx.AsyncClient(base_url=chain.url) as http:
        await http.get(V1)
        await http.get("/nope")
    total = chain.stats_total()
    assert total.requests == 3
    assert total.bytes_out > len(received) + 100_000
    assert chain.stats["unknown"].requests == 1


# --- several nodes of one chain (issue 13.7) ---------------------------------------------


async def heights_of(url: str) -> tuple[int, int]:
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        return await get_height(http)


async def test_endpoints_are_separate_servers_with_their_own_stats(chain: ChainSim) -> None:
    second = await chain.add_endpoint()
    third = await chain.add_endpoint(height_header="X-Cosmos-Block-Height")
    urls = [endpoint.url for endpoint in chain.endpoints]
    assert urls[0] == chain.url and len(set(urls)) == 3
    chain.advance(3)
    async with httpx.AsyncClient(base_url=second.url, timeout=5) as http:
        for _ in range(4):
            assert (await http.get(CURRENT_PLAN)).json() == {"plan": None}
        assert await get_height(http) == (chain.height, chain.app_height)
    async with httpx.AsyncClient(base_url=third.url, timeout=5) as http:
        response = await http.get(CURRENT_PLAN)
        assert response.headers["X-Cosmos-Block-Height"] == str(chain.app_height)
    assert second.stats["current_plan"].requests == 4
    assert second.stats["blocks_latest"].requests == 1
    assert third.stats_total().requests == 1
    assert chain.stats_total().requests == 0  # the first node saw none of it
    assert second.connections == 1


async def test_lagging_endpoint_shows_the_chain_blocks_behind(chain: ChainSim) -> None:
    lag = 2
    behind = await chain.add_endpoint(lag=lag)
    start = chain.height
    chain.advance(5)
    assert await heights_of(behind.url) == (chain.height - lag, chain.height - lag)
    halt = chain.height + 3
    chain.schedule_plan("v2", halt)
    async with httpx.AsyncClient(base_url=behind.url, timeout=5) as http:
        assert (await http.get(CURRENT_PLAN)).json() == {"plan": None}  # not yet seen
        chain.advance(lag)
        assert (await http.get(CURRENT_PLAN)).json()["plan"]["name"] == "v2"
        chain.advance(10)  # to the halt; the lagging node stays `lag` blocks short of it
        assert chain.height == halt
        assert await get_height(http) == (halt - lag, halt - lag)
        chain.apply_plan()
        applied = "/cosmos/upgrade/v1beta1/applied_plan/v2"
        assert (await http.get(applied)).json() == {"height": "0"}  # not applied there yet
        chain.advance(lag)
        assert (await http.get(applied)).json() == {"height": str(halt)}
        assert (await http.get(CURRENT_PLAN)).json() == {"plan": None}
    assert await heights_of(chain.url) == (chain.height, chain.height)
    assert chain.height == start + 5 + 3 + lag


async def test_delayed_endpoint_catches_up_once_the_chain_halts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    block_time, delay = 6.0, 15.0
    sim = ChainSim(height=100, block_time=block_time)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        await trio.sleep(60.5)
        blocks_behind = math.ceil(delay / block_time)
        assert sim.view(delay=delay).height in (sim.height - blocks_behind, sim.height - 2)
        halt = sim.height + 2
        sim.schedule_plan("v2", halt)
        await sim.wait_until(lambda s: s.halted)
        assert sim.view(delay=delay).height < halt
        await trio.sleep(delay)
        view = sim.view(delay=delay)
        assert (view.height, view.app_height, view.plan) == (halt, halt - 1, sim.plan)
        nursery.cancel_scope.cancel()


async def test_endpoint_goes_down_and_comes_back_on_its_port(chain: ChainSim) -> None:
    other = await chain.add_endpoint()
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.get(other.url + CURRENT_PLAN)).status_code == 200
        other.go_down()
        assert not other.up
        with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)):
            await http.get(other.url + CURRENT_PLAN)  # the kept-alive connection was dropped
        with pytest.raises(httpx.ConnectError):
            await http.get(other.url + CURRENT_PLAN)  # and the port refuses new ones
        assert (await http.get(chain.url + CURRENT_PLAN)).status_code == 200
        await other.come_up()
        assert other.up
        assert (await http.get(other.url + CURRENT_PLAN)).status_code == 200
    assert other.stats["current_plan"].requests == 2  # the refused one never arrived


async def test_endpoint_down_at_a_height_for_a_while(nursery: trio.Nursery) -> None:
    sim = ChainSim(height=10, block_time=0.05)
    await nursery.start(sim.run)
    flaky = await sim.add_endpoint()
    forever = await sim.add_endpoint()
    flaky.down_at(14, duration=0.3)
    forever.down_at(14)
    await sim.wait_until(lambda s: s.height >= 14)
    with trio.fail_after(2):
        await flaky.wait_up(False)
        await forever.wait_up(False)
    async with httpx.AsyncClient(timeout=5) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(flaky.url + CURRENT_PLAN)
        down_since = trio.current_time()
        with trio.fail_after(3):
            await flaky.wait_up()
        assert trio.current_time() - down_since >= 0.2
        assert (await http.get(flaky.url + CURRENT_PLAN)).status_code == 200
        await trio.sleep(0.1)
        with pytest.raises(httpx.ConnectError):
            await http.get(forever.url + CURRENT_PLAN)


async def test_fault_501_and_hang_are_per_endpoint(chain: ChainSim, fixtures_dir: Path) -> None:
    old = await chain.add_endpoint()
    hung = await chain.add_endpoint()
    old.set_fault("current_plan", Fault.HTTP_501)
    hung.set_fault("*", Fault.HANG)
    async with httpx.AsyncClient(timeout=0.3) as http:
        response = await http.get(old.url + CURRENT_PLAN)
        assert response.status_code == 501
        assert response.json() == fixture_json(fixtures_dir, "error_not_implemented.json")
        with pytest.raises(httpx.ReadTimeout):
            await http.get(hung.url + BLOCKS_LATEST)
        assert (await http.get(chain.url + CURRENT_PLAN)).status_code == 200
        assert (await http.get(old.url + BLOCKS_LATEST)).status_code == 200


# --- the restart on the new binary, block times ------------------------------------------


async def test_new_binary_applies_the_plan_after_a_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    block_time, restart = 6.0, 45.0
    sim = ChainSim(height=100, block_time=block_time, upgrade_after=restart)
    halt = 103
    sim.schedule_plan("v2", halt)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        start = trio.current_time()
        await sim.wait_until(lambda s: s.halted)
        halted_at = sim.height_reached_at[halt]
        assert halted_at - start == pytest.approx(3 * block_time)
        assert (sim.height, sim.app_height, sim.plan) == (halt, halt - 1, Plan("v2", halt))
        await sim.wait_until(lambda s: s.plan is None)
        assert trio.current_time() - halted_at == pytest.approx(restart)
        assert (sim.applied, sim.app_height) == ({"v2": halt}, halt)
        await sim.wait_until(lambda s: s.height > halt)
        assert sim.height_reached_at[halt + 1] - halted_at == pytest.approx(restart + block_time)
        nursery.cancel_scope.cancel()


async def test_chain_that_never_resumes(autojump_clock: trio.testing.MockClock) -> None:
    sim = ChainSim(height=100, block_time=6.0, upgrade_after=None)
    sim.schedule_plan("v2", 102)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        await trio.sleep(3600)
        assert (sim.height, sim.app_height, sim.plan, sim.applied) == (102, 101, sim.plan, {})
        sim.upgrade_after = 10.0  # the operator finally rolls the pods
        await trio.sleep(10.5)
        assert (sim.plan, sim.applied) == (None, {"v2": 102})
        nursery.cancel_scope.cancel()


async def test_block_time_jitter_is_seeded_and_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    block_time, jitter = 6.0, 0.2
    gaps = []
    for _ in range(2):
        sim = ChainSim(height=1, block_time=block_time, block_jitter=jitter, seed=3)
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            await sim.wait_until(lambda s: s.height >= 41)
            nursery.cancel_scope.cancel()
        times = [sim.height_reached_at[h] for h in range(1, 42)]
        gaps.append([b - a for a, b in itertools.pairwise(times)])
    assert gaps[0] == pytest.approx(gaps[1])
    assert all(block_time * (1 - jitter) <= g <= block_time * (1 + jitter) for g in gaps[0])
    assert len({round(g, 6) for g in gaps[0]}) > 10
    with pytest.raises(ValueError, match="block_jitter"):
        ChainSim(block_jitter=1.5)

"""Structure-aware fuzzing of everything the chain client reads from an LCD (issue 9.10b).

Why structure-aware: random bytes die in the JSON parser and never reach the structuring
hooks. These tests start from the real captures in tests/fixtures/cosmos/, keep the shape,
and replace a few values with what a broken or hostile node could send (wrong types, deep
nesting, NaN, numbers beyond int64, negative heights, missing keys, odd unicode, truncated
bodies). The decoders may only raise `MalformedJSON`, and the client, over an
`httpx.MockTransport` serving such answers with hostile statuses, headers, `next_key`s and
plan names, may only raise `ChainError`: anything else would crash-loop the daemon.

Example counts come from the hypothesis profile (bounded by default, long under
`just fuzz`); the tests never set max_examples themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gopher_updater import chain_json, chain_shapes
from gopher_updater.chain import ChainClient
from gopher_updater.chain_errors import ChainError
from gopher_updater.chain_gov import UpgradeListing
from gopher_updater.chain_shapes import INT64_MAX
from gopher_updater.model import ProposalStatus

pytestmark = pytest.mark.fuzz

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cosmos"
DEEP = "\x00deep\x00"  # replaced by deeply nested JSON after encoding (json.dumps would recurse)
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def capture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


#: Each decoder with the real captures it is meant for.
DECODER_CAPTURES: list[tuple[Callable[[bytes], object], str]] = [
    (chain_json.current_plan, "derived_upgrade_current_plan_with_plan_nibiru.json"),
    (chain_json.current_plan, "derived_upgrade_current_plan_empty.json"),
    (chain_json.applied_height, "derived_upgrade_applied_plan_not_applied.json"),
    (chain_json.latest_block, "tendermint_blocks_latest_astria_metro.json"),
    (chain_json.proposals_v1, "gov_v1_proposals_passed_upgrade.json"),
    (chain_json.proposals_v1, "gov_v1_proposals_legacy_content_upgrade.json"),
    (chain_json.proposals_v1, "gov_v1_proposals_cosmoshub_page3_of3.json"),
    (chain_json.proposals_v1beta1, "gov_v1beta1_proposals_passed_upgrade.json"),
    (chain_json.error_body, "error_not_implemented.json"),
]
CAPTURES = {name: capture(name) for _decode, name in DECODER_CAPTURES}

HOSTILE_STRINGS = st.sampled_from(
    [
        "",
        "-1",
        "0",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "1" * 400,
        "1e3",
        "1.5",
        " 1",
        "+1",
        "١٢",
        "NaN",
        "\ud800",
        "v1/../../x?y#z",
        "\x00\r\n",
        "PROPOSAL_STATUS_PASSED",
        "PROPOSAL_STATUS_NOPE",
        "/cosmos.upgrade.v1beta1.MsgSoftwareUpgrade",
        "/cosmos.gov.v1.MsgExecLegacyContent",
        "AAAAAAAAAx0=",
        "x" * 5000,
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 2**64, -1, 10**40]),
    st.floats(),  # NaN and ±Infinity are written as the bare tokens some encoders emit
    st.text(st.characters(codec=None), max_size=20),
    HOSTILE_STRINGS,
    st.just(DEEP),
)
HOSTILE = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["plan", "height", "name", "@type", "x"]), inner, max_size=3
        )
    ),
    max_leaves=6,
)


def paths(value: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `value` (the root excluded)."""
    found: list[tuple[Any, ...]] = []
    items: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def mutate(data: st.DataObject, doc: Any) -> bytes:
    """A copy of `doc` with a few values replaced or removed, encoded, maybe truncated."""
    doc = json.loads(json.dumps(doc))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        every = paths(doc)
        if not every:
            doc = data.draw(HOSTILE)
            break
        path = data.draw(st.sampled_from(every), label="path")
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and data.draw(st.booleans(), label="delete"):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(HOSTILE, label="value")
    depth = data.draw(st.sampled_from([10, 70, 3000]), label="depth")
    text = json.dumps(doc).replace(json.dumps(DEEP), "[" * depth + "1" + "]" * depth)
    body = text.encode("utf-8", errors="surrogatepass")
    cut = data.draw(st.sampled_from([None, None, None, 0, 1, len(body) // 2, len(body) - 1]))
    return body if cut is None else body[:cut]


def check_decoded(value: object) -> None:
    """What a decoder returned holds no number outside what the daemon can act on."""
    if isinstance(value, chain_shapes.ProposalPage):
        assert all(0 < p.plan.height <= INT64_MAX for p in value.upgrades)
        assert all(0 <= i <= INT64_MAX for i in value.ids)
    elif isinstance(value, chain_shapes.HeaderJSON):
        assert 0 <= value.height <= INT64_MAX and len(value.time) <= 64
    elif isinstance(value, int):
        assert 0 <= value <= INT64_MAX
    elif value is not None and hasattr(value, "height"):
        assert 0 < value.height <= INT64_MAX


@FUZZ
@given(data=st.data(), which=st.sampled_from(range(len(DECODER_CAPTURES))))
def test_decoders_on_mutated_captures_raise_only_malformed_json(
    data: st.DataObject, which: int
) -> None:
    decode, name = DECODER_CAPTURES[which]
    body = mutate(data, CAPTURES[name])
    try:
        decoded = decode(body)
    except chain_shapes.MalformedJSON as exc:
        assert exc.reason
        return
    check_decoded(decoded)


# --- the client over a transport serving mutated answers ---------------------------------

ROUTE_CAPTURES = {
    "current_plan": "derived_upgrade_current_plan_with_plan_nibiru.json",
    "applied_plan": "derived_upgrade_applied_plan_not_applied.json",
    "latest": "tendermint_blocks_latest_astria_metro.json",
    "v1/proposals": "gov_v1_proposals_passed_upgrade.json",
    "v1beta1/proposals": "gov_v1beta1_proposals_passed_upgrade.json",
}
STATUSES = st.sampled_from([200, 200, 200, 200, 302, 400, 404, 429, 500, 501, 503, 999])
HEADER_VALUES = st.one_of(
    st.sampled_from([b"1000", b"-1", b"", b"9" * 40, b"12a", b"\xff\xfe", b"1000 "]),
    st.binary(max_size=12),
)
NAMES = st.one_of(
    HOSTILE_STRINGS, st.text(st.characters(codec=None), max_size=30), st.just("v1.2.3")
)
MAX_REQUESTS = 12  # a scenario's transport ends every walk after this many answers


def transport(data: st.DataObject) -> httpx.MockTransport:
    served = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal served
        served += 1
        route = next((r for r in ROUTE_CAPTURES if r in request.url.path), "current_plan")
        doc = CAPTURES.get(ROUTE_CAPTURES[route]) or capture(ROUTE_CAPTURES[route])
        if "proposals" in route:
            doc = json.loads(json.dumps(doc))
            keys = st.one_of(st.none(), HOSTILE_STRINGS, st.just(f"AAAAAAAAA{served:02d}="))
            doc["pagination"]["next_key"] = None if served >= MAX_REQUESTS else data.draw(keys)
        body = mutate(data, doc) if data.draw(st.booleans(), label="mutate") else None
        if body is None:
            body = json.dumps(doc).encode()
        headers = {}
        if data.draw(st.booleans(), label="height header"):
            headers["Grpc-Metadata-X-Cosmos-Block-Height"] = data.draw(HEADER_VALUES)
        return httpx.Response(data.draw(STATUSES), content=body, headers=headers)

    return httpx.MockTransport(handler)


@FUZZ
@given(data=st.data(), name=NAMES)
def test_client_on_hostile_answers_raises_only_chain_errors(data: st.DataObject, name: str) -> None:
    async def scenario() -> None:
        http = httpx.AsyncClient(transport=transport(data))
        async with http, ChainClient("http://lcd.test", timeout=5, client=http) as client:
            asks = [
                client.current_plan,
                client.latest_height,
                lambda: client.applied_height(name),
                lambda: client.upgrade_proposals(ProposalStatus.VOTING_PERIOD, page_limit=2),
                lambda: client.newest_upgrades(
                    ProposalStatus.PASSED,
                    want=2,
                    since=UpgradeListing((), ProposalStatus.PASSED, 2, 900, 1),
                    reopen=frozenset({data.draw(st.integers(0, 2**64), label="reopen")}),
                ),
            ]
            for ask in asks:
                try:
                    await ask()
                except ChainError as exc:
                    assert str(exc).startswith("/cosmos/")
                    assert "lcd.test" in exc.origin

    trio.run(scenario)

"""What a Cosmos SDK LCD (grpc-gateway, port 1317) puts on the wire, as pure functions.

The simulator's HTTP layer (`chainsim.py`) calls these; keeping them free of sockets and
clocks lets the encoding, pagination and conversion rules be read against the SDK source
they copy (`/work/shared/reference/cosmos-lcd.md` §1, §2.4, §2.5):

- gogo JSONPb: int64 as strings, enums as names, `null` for absent messages, compact JSON
  (v0.47+), Go's HTML-safe string escaping;
- pagination: `query.FilteredPaginate` (v0.45-v0.47, correct) and
  `query.CollectionFilteredPaginate` (v0.50, counts scanned items on keyed pages and skips
  raw items for an offset);
- the gov v1 -> v1beta1 conversion, which fails the whole page on a proposal with != 1 message;
- grpc-gateway query-parameter parsing and its Go `strconv` error messages.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from gopher_updater.model import Plan, ProposalStatus

JsonDict = dict[str, Any]

#: The x/gov module account on Cosmos Hub (the `authority` of gov-executed messages).
GOV_AUTHORITY = "cosmos10d07y265gmmuvt4z0w9aw880jnsr700j6zn9kn"
ZERO_TIME = "0001-01-01T00:00:00Z"
DEFAULT_LIMIT = 100

MSG_SOFTWARE_UPGRADE = "/cosmos.upgrade.v1beta1.MsgSoftwareUpgrade"
MSG_CANCEL_UPGRADE = "/cosmos.upgrade.v1beta1.MsgCancelUpgrade"
MSG_EXEC_LEGACY_CONTENT = "/cosmos.gov.v1.MsgExecLegacyContent"
SOFTWARE_UPGRADE_PROPOSAL = "/cosmos.upgrade.v1beta1.SoftwareUpgradeProposal"
CANCEL_SOFTWARE_UPGRADE_PROPOSAL = "/cosmos.upgrade.v1beta1.CancelSoftwareUpgradeProposal"
TEXT_PROPOSAL = "/cosmos.gov.v1beta1.TextProposal"

#: Encodings `ChainSim.add_proposal` understands (reference §3.1, §3.2).
ENCODINGS = frozenset({"v1", "v1-legacy", "text", "v1-cancel", "v1-legacy-cancel"})

#: What ping.pub and others got from v1beta1 on v0.46-v0.50 (an sdk code-29 error that the
#: gateway reports as gRPC Unknown = HTTP 500).
V1BETA1_CONVERSION_MESSAGE = (
    "codespace sdk code 29: invalid type: can't convert a gov/v1 Proposal to gov/v1beta1 "
    "Proposal when amount of proposal messages not exactly one"
)

#: grpc-gateway's answer for a path no handler is registered for (real capture,
#: tests/fixtures/cosmos/error_not_implemented.json).
NOT_IMPLEMENTED_BODY: JsonDict = {"code": 12, "message": "Not Implemented", "details": []}


class LcdError(Exception):
    """A gRPC status the gateway turns into `{"code", "message", "details"}` + an HTTP status.

    `via_grpc` says whether the error came back from the gRPC handler (then the gateway also
    forwards the height metadata header) or from the gateway itself (parameter parsing).
    """

    def __init__(self, http_status: int, code: int, message: str, *, via_grpc: bool) -> None:
        super().__init__(f"HTTP {http_status} code {code}: {message}")
        self.http_status = http_status
        self.code = code
        self.message = message
        self.via_grpc = via_grpc


@attrs.frozen
class Answer:
    """A complete LCD answer before framing: status, body and whether it carries the height."""

    status: int
    body: bytes
    content_type: str = "application/json"
    via_grpc: bool = True


def encode_json(obj: object) -> bytes:
    """Compact JSON the way Go's encoding/json writes strings (raw UTF-8, `<>&` escaped)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    # These three characters can only occur inside JSON strings, so a blind replace is safe.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode()


def error_answer(err: LcdError) -> Answer:
    body = encode_json({"code": err.code, "message": err.message, "details": []})
    return Answer(err.http_status, body, via_grpc=err.via_grpc)


def not_implemented() -> Answer:
    return Answer(501, encode_json(NOT_IMPLEMENTED_BODY), via_grpc=False)


# --- x/upgrade ---------------------------------------------------------------------------


def plan_json(plan: Plan) -> JsonDict:
    """`cosmos.upgrade.v1beta1.Plan` in JSONPb: zero time, string height, null client state."""
    return {
        "name": plan.name,
        "time": ZERO_TIME,
        "height": str(plan.height),
        "info": plan.info,
        "upgraded_client_state": None,
    }


def current_plan_body(plan: Plan | None) -> bytes:
    return encode_json({"plan": None if plan is None else plan_json(plan)})


def applied_plan_body(height: int) -> bytes:
    return encode_json({"height": str(height)})


# --- blocks ------------------------------------------------------------------------------


def _block_hash(height: int) -> str:
    """A stable fake block hash, so "has the block changed?" checks behave like on a chain."""
    return base64.b64encode(hashlib.sha256(f"gopher-chainsim/{height}".encode()).digest()).decode()


def blocks_latest_body(height: int, time: str) -> bytes:
    """The real astria capture with this height, time and matching hashes in both blocks."""
    doc = copy.deepcopy(BLOCK_TEMPLATE)
    doc["block_id"]["hash"] = _block_hash(height)
    for key in ("block", "sdk_block"):
        block = doc[key]
        header = block["header"]
        header["height"] = str(height)
        header["time"] = time
        header["last_block_id"]["hash"] = _block_hash(height - 1)
        commit = block["last_commit"]
        commit["height"] = str(height - 1)
        commit["block_id"]["hash"] = _block_hash(height - 1)
        for signature in commit["signatures"]:
            signature["timestamp"] = time
    return encode_json(doc)


# --- query parameters (grpc-gateway v1 + Go strconv messages) ------------------------------

_INT_RE = re.compile(r"[+-]?[0-9]+")
_UINT_RE = re.compile(r"[0-9]+")
_GO_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
_STD_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_URL_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


def _bad_param(message: str) -> LcdError:
    return LcdError(400, 3, message, via_grpc=False)


def _parse_int32(value: str) -> int:
    if _INT_RE.fullmatch(value) is None:
        raise _bad_param(f'strconv.ParseInt: parsing "{value}": invalid syntax')
    number = int(value)
    if not -(2**31) <= number < 2**31:
        raise _bad_param(f'strconv.ParseInt: parsing "{value}": value out of range')
    return number


def _parse_uint64(value: str) -> int:
    if _UINT_RE.fullmatch(value) is None:
        raise _bad_param(f'strconv.ParseUint: parsing "{value}": invalid syntax')
    number = int(value)
    if number >= 2**64:
        raise _bad_param(f'strconv.ParseUint: parsing "{value}": value out of range')
    return number


def _parse_bool(value: str) -> bool:
    try:
        return _GO_BOOLS[value]
    except KeyError:
        raise _bad_param(f'strconv.ParseBool: parsing "{value}": invalid syntax') from None


def _parse_bytes(value: str) -> bytes:
    """grpc-gateway's `runtime.Bytes`: standard base64, then URL-safe, Go's error message."""
    raw = value.encode()
    for alphabet, altchars in ((_STD_B64, None), (_URL_B64, b"-_")):
        if all(c in alphabet for c in raw):
            try:
                return base64.b64decode(raw, altchars=altchars, validate=True)
            except binascii.Error:
                pass
    bad = next((i for i, c in enumerate(raw) if c not in _URL_B64), None)
    position = bad if bad is not None else len(raw) - len(raw) % 4
    raise _bad_param(f"illegal base64 data at input byte {position}")


@attrs.frozen
class PageRequest:
    """`cosmos.base.query.v1beta1.PageRequest` after the gateway parsed the query string."""

    key: bytes | None = None
    offset: int = 0
    limit: int = 0
    count_total: bool = False
    reverse: bool = False


@attrs.frozen
class ProposalsQuery:
    status: int
    page: PageRequest


def parse_proposals_query(query: str) -> ProposalsQuery:
    """Parse `?proposal_status=&pagination.*=` like the gateway; unknown params are ignored.

    A repeated parameter keeps its last value. `+` means space (Go's `url.ParseQuery`), which
    is why an unencoded `next_key` fails with "illegal base64 data".
    """
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    status = _parse_int32(params["proposal_status"]) if "proposal_status" in params else 0
    key = _parse_bytes(params["pagination.key"]) if "pagination.key" in params else None
    page = PageRequest(
        key=key or None,
        offset=_parse_uint64(params.get("pagination.offset", "0")),
        limit=_parse_uint64(params.get("pagination.limit", "0")),
        count_total=_parse_bool(params.get("pagination.count_total", "false")),
        reverse=_parse_bool(params.get("pagination.reverse", "false")),
    )
    return ProposalsQuery(status=status, page=page)


# --- pagination --------------------------------------------------------------------------


def store_key(proposal_id: int) -> bytes:
    """The proposal's key in the gov store: 8-byte big-endian id (what `next_key` encodes)."""
    return proposal_id.to_bytes(8, "big")


@attrs.frozen
class Page:
    items: list[JsonDict]
    next_key: bytes | None
    total: int

    def pagination_json(self) -> JsonDict:
        next_key = None if self.next_key is None else base64.b64encode(self.next_key).decode()
        return {"next_key": next_key, "total": str(self.total)}


Entry = tuple[bytes, JsonDict]


def _iterate(entries: Sequence[Entry], start: bytes | None, reverse: bool) -> Iterable[Entry]:
    """Store iteration from `start` (inclusive); reverse covers keys up to and under `start`."""
    if not reverse:
        return (e for e in entries if start is None or e[0] >= start)
    return (e for e in reversed(entries) if start is None or e[0][: len(start)] <= start)


def paginate(
    entries: Sequence[Entry],
    page: PageRequest,
    match: Callable[[JsonDict], bool],
    *,
    sdk050_bug: bool,
) -> Page:
    """Paginate `entries` (sorted by key) like the SDK; `sdk050_bug` selects v0.50's version."""
    if page.offset > 0 and page.key is not None:
        raise LcdError(
            400, 3, "invalid request, either offset or key is expected, got both", via_grpc=True
        )
    limit, count_total = page.limit, page.count_total
    if limit == 0:
        limit, count_total = DEFAULT_LIMIT, True
    paginator = _collection_filtered_paginate if sdk050_bug else _filtered_paginate
    return paginator(entries, page, limit, count_total, match)


def _filtered_paginate(
    entries: Sequence[Entry],
    page: PageRequest,
    limit: int,
    count_total: bool,
    match: Callable[[JsonDict], bool],
) -> Page:
    """`types/query.FilteredPaginate` (v0.45-v0.47): limits count matches."""
    items: list[JsonDict] = []
    next_key: bytes | None = None
    hits = 0
    if page.key is not None:
        for key, item in _iterate(entries, page.key, page.reverse):
            if hits == limit:
                next_key = key
                break
            if match(item):
                items.append(item)
                hits += 1
        return Page(items, next_key, 0)
    end = page.offset + limit
    for key, item in _iterate(entries, None, page.reverse):
        if match(item):
            if page.offset <= hits < end:
                items.append(item)
            hits += 1
        if hits == end + 1:
            if next_key is None:
                next_key = key
            if not count_total:
                break
    return Page(items, next_key, hits if count_total else 0)


def _collection_filtered_paginate(
    entries: Sequence[Entry],
    page: PageRequest,
    limit: int,
    count_total: bool,
    match: Callable[[JsonDict], bool],
) -> Page:
    """`types/query.CollectionFilteredPaginate` (v0.50, fixed in v0.53), bugs included.

    With a key the limit counts *scanned* items, so filtered pages come back short or empty
    while `next_key` is set; with an offset the raw items are skipped before filtering.
    """
    items: list[JsonDict] = []
    next_key: bytes | None = None
    count = 0
    if page.key is not None:
        for key, item in _iterate(entries, page.key, page.reverse):
            if count == limit:
                next_key = key
                break
            if match(item):
                items.append(item)
            count += 1
        return Page(items, next_key, 0)
    remaining = list(_iterate(entries, None, page.reverse))
    if page.offset > len(remaining):
        raise LcdError(500, 13, "collections: invalid iterator", via_grpc=True)
    for key, item in remaining[page.offset :]:
        if count < limit:
            if match(item):
                items.append(item)
                count += 1
            continue
        if count == limit:
            next_key = key
            if not count_total:
                return Page(items, next_key, 0)
        if match(item):
            count += 1
    return Page(items, next_key, count + page.offset if count_total else 0)


def status_number(item: JsonDict) -> int:
    """The numeric status of a (v1 or v1beta1) proposal item; unknown names count as 0."""
    name = str(item.get("status", ""))
    member = ProposalStatus.__members__.get(name.removeprefix("PROPOSAL_STATUS_"))
    return int(member) if member is not None else 0


def status_filter(status: int) -> Callable[[JsonDict], bool]:
    """Outside DEPOSIT_PERIOD..FAILED the gov keeper does not filter (`ValidProposalStatus`)."""
    if not ProposalStatus.DEPOSIT_PERIOD <= status <= ProposalStatus.FAILED:
        return lambda _item: True
    return lambda item: status_number(item) == status


def proposals_body(items: Iterable[JsonDict], page: Page) -> bytes:
    return encode_json({"proposals": list(items), "pagination": page.pagination_json()})


# --- gov v1 -> v1beta1 -------------------------------------------------------------------


def v1_to_v1beta1(proposal: JsonDict) -> JsonDict:
    """`x/gov/migrations/v3.ConvertToLegacyProposal` (v0.46-v0.50).

    The legacy content is unwrapped from `MsgExecLegacyContent`; any other single message is
    put in `content` as is (so `content["@type"]` may be `MsgSoftwareUpgrade`).
    """
    messages = proposal.get("messages") or []
    if len(messages) != 1:
        raise LcdError(500, 2, V1BETA1_CONVERSION_MESSAGE, via_grpc=True)
    message = messages[0]
    content = message["content"] if message.get("@type") == MSG_EXEC_LEGACY_CONTENT else message
    tally = proposal.get("final_tally_result") or {}
    return {
        "proposal_id": proposal["id"],
        "content": content,
        "status": proposal["status"],
        "final_tally_result": {
            "yes": tally.get("yes_count", "0"),
            "abstain": tally.get("abstain_count", "0"),
            "no": tally.get("no_count", "0"),
            "no_with_veto": tally.get("no_with_veto_count", "0"),
        },
        "submit_time": proposal.get("submit_time") or ZERO_TIME,
        "deposit_end_time": proposal.get("deposit_end_time") or ZERO_TIME,
        "total_deposit": proposal.get("total_deposit") or [],
        "voting_start_time": proposal.get("voting_start_time") or ZERO_TIME,
        "voting_end_time": proposal.get("voting_end_time") or ZERO_TIME,
    }


# --- proposals made up by tests ----------------------------------------------------------


def _legacy_content(encoding: str, plan: Plan | None, title: str) -> JsonDict:
    """The v1beta1 `Content` a pre-v0.46 chain would store for this encoding."""
    description = f"{title} (gopher-updater chain simulator)"
    if encoding in ("v1", "v1-legacy"):
        assert plan is not None
        return {
            "@type": SOFTWARE_UPGRADE_PROPOSAL,
            "title": title,
            "description": description,
            "plan": plan_json(plan),
        }
    if encoding in ("v1-cancel", "v1-legacy-cancel"):
        return {
            "@type": CANCEL_SOFTWARE_UPGRADE_PROPOSAL,
            "title": title,
            "description": description,
        }
    return {"@type": TEXT_PROPOSAL, "title": title, "description": description}


def _messages(encoding: str, plan: Plan | None, title: str) -> list[JsonDict]:
    if encoding == "v1":
        assert plan is not None
        return [
            {"@type": MSG_SOFTWARE_UPGRADE, "authority": GOV_AUTHORITY, "plan": plan_json(plan)}
        ]
    if encoding == "v1-cancel":
        return [{"@type": MSG_CANCEL_UPGRADE, "authority": GOV_AUTHORITY}]
    if encoding == "text":
        return []
    return [
        {
            "@type": MSG_EXEC_LEGACY_CONTENT,
            "content": _legacy_content(encoding, plan, title),
            "authority": GOV_AUTHORITY,
        }
    ]


def _check_encoding(encoding: str, plan: Plan | None) -> None:
    if encoding not in ENCODINGS:
        raise ValueError(
            f"unknown proposal encoding {encoding!r}; expected one of {sorted(ENCODINGS)}"
        )
    if encoding in ("v1", "v1-legacy") and plan is None:
        raise ValueError(f"a {encoding!r} upgrade proposal needs a plan")


def _times(proposal_id: int, status: ProposalStatus) -> JsonDict:
    day = 1 + proposal_id % 28
    submit = f"2024-06-{day:02d}T17:00:09.418591987Z"
    deposit_end = f"2024-07-{day:02d}T17:00:09.418591987Z"
    voting = status != ProposalStatus.DEPOSIT_PERIOD
    return {
        "submit_time": submit,
        "deposit_end_time": deposit_end,
        "voting_start_time": submit if voting else None,
        "voting_end_time": deposit_end if voting else None,
    }


def make_v1_proposal(
    proposal_id: int, status: ProposalStatus, plan: Plan | None, encoding: str
) -> JsonDict:
    """A gov v1 proposal item shaped like the Cosmos Hub captures (SDK v0.47)."""
    _check_encoding(encoding, plan)
    title = f"Software upgrade {plan.name}" if plan is not None else f"Proposal {proposal_id}"
    times = _times(proposal_id, status)
    return {
        "id": str(proposal_id),
        "messages": _messages(encoding, plan, title),
        "status": f"PROPOSAL_STATUS_{status.name}",
        "final_tally_result": {
            "yes_count": "0",
            "abstain_count": "0",
            "no_count": "0",
            "no_with_veto_count": "0",
        },
        "submit_time": times["submit_time"],
        "deposit_end_time": times["deposit_end_time"],
        "total_deposit": [{"denom": "uatom", "amount": "250000000"}],
        "voting_start_time": times["voting_start_time"],
        "voting_end_time": times["voting_end_time"],
        "metadata": "",
        "title": title,
        "summary": f"{title} (gopher-updater chain simulator)",
        "proposer": "cosmos13c3gup8sufc47xhqau3h2hyez2v4y4q5lwmr48",
    }


def make_v1beta1_proposal(
    proposal_id: int, status: ProposalStatus, plan: Plan | None, encoding: str
) -> JsonDict:
    """The same proposal as an SDK v0.45 chain stores it (legacy `content`, never fails)."""
    _check_encoding(encoding, plan)
    title = f"Software upgrade {plan.name}" if plan is not None else f"Proposal {proposal_id}"
    converted = v1_to_v1beta1(make_v1_proposal(proposal_id, status, plan, "v1-legacy-cancel"))
    converted["content"] = _legacy_content(encoding, plan, title)
    return converted


#: The real `blocks/latest` capture
#: (tests/fixtures/cosmos/tendermint_blocks_latest_astria_metro.json),
#: embedded so an installed package can serve it; tests check it still equals the capture.
BLOCK_TEMPLATE: JsonDict = {
    "block_id": {
        "hash": "sSpfoa73oXQddYdskOz6VGG3a6hZ+MAYTMaiY41HfnQ=",
        "part_set_header": {"total": 1, "hash": "fl7xAVccz+b6dKwdPBIZHDSl4KN9l1jLIgb7hO0eMr0="},
    },
    "block": {
        "header": {
            "version": {"block": "11", "app": "0"},
            "chain_id": "test",
            "height": "1535",
            "time": "2023-04-27T14:35:01.432976256Z",
            "last_block_id": {
                "hash": "e8+lA66E21id0jLCSZKZbqlLR2USn0L09Nx2WoeloJ8=",
                "part_set_header": {
                    "total": 1,
                    "hash": "GHuPppYO548tjTD/o6y7Nm5IR/YT3MyTcjL+PRTaAg8=",
                },
            },
            "last_commit_hash": "it3AwnT9mT/3pnajQ3x1v1k5EkHeihs1GCDvsYW5hj0=",
            "data_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "validators_hash": "U5hzFMsNK9ozjoCD5LKFVux3k4GiW5tmhKPoLCWx9oM=",
            "next_validators_hash": "U5hzFMsNK9ozjoCD5LKFVux3k4GiW5tmhKPoLCWx9oM=",
            "consensus_hash": "BICRvH3cKD93v7+R1zxE2ljD34qcvIZ0Bdi389qtoi8=",
            "app_hash": "Pq8dy53jfnFnFaPleK3o++k3ajMNpusN9bZn/Wc5oxY=",
            "last_results_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "evidence_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "proposer_address": "INaK2jlx5kaWGmLEq5dHYK4y6RI=",
        },
        "data": {
            "txs": [],
            "blobs": [],
            "square_size": "0",
            "hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        },
        "evidence": {"evidence": []},
        "last_commit": {
            "height": "1534",
            "round": 0,
            "block_id": {
                "hash": "e8+lA66E21id0jLCSZKZbqlLR2USn0L09Nx2WoeloJ8=",
                "part_set_header": {
                    "total": 1,
                    "hash": "GHuPppYO548tjTD/o6y7Nm5IR/YT3MyTcjL+PRTaAg8=",
                },
            },
            "signatures": [
                {
                    "block_id_flag": "BLOCK_ID_FLAG_COMMIT",
                    "validator_address": "INaK2jlx5kaWGmLEq5dHYK4y6RI=",
                    "timestamp": "2023-04-27T14:35:01.432976256Z",
                    "signature": (
                        "JBh/5ocUKFhje5E+ynersX5WYCOO4E8fTqH2LWrSCcqUgcZmk"
                        "QOBFe1zmYjaoiYN7B3SiErurBmfy5S1VHuVDA=="
                    ),
                }
            ],
        },
    },
    "sdk_block": {
        "header": {
            "version": {"block": "11", "app": "0"},
            "chain_id": "test",
            "height": "1535",
            "time": "2023-04-27T14:35:01.432976256Z",
            "last_block_id": {
                "hash": "e8+lA66E21id0jLCSZKZbqlLR2USn0L09Nx2WoeloJ8=",
                "part_set_header": {
                    "total": 1,
                    "hash": "GHuPppYO548tjTD/o6y7Nm5IR/YT3MyTcjL+PRTaAg8=",
                },
            },
            "last_commit_hash": "it3AwnT9mT/3pnajQ3x1v1k5EkHeihs1GCDvsYW5hj0=",
            "data_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "validators_hash": "U5hzFMsNK9ozjoCD5LKFVux3k4GiW5tmhKPoLCWx9oM=",
            "next_validators_hash": "U5hzFMsNK9ozjoCD5LKFVux3k4GiW5tmhKPoLCWx9oM=",
            "consensus_hash": "BICRvH3cKD93v7+R1zxE2ljD34qcvIZ0Bdi389qtoi8=",
            "app_hash": "Pq8dy53jfnFnFaPleK3o++k3ajMNpusN9bZn/Wc5oxY=",
            "last_results_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "evidence_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "proposer_address": "metrovaloper1yrtg4k3ew8nyd9s6vtz2h968vzhr96gjad4ws4",
        },
        "data": {
            "txs": [],
            "blobs": [],
            "square_size": "0",
            "hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        },
        "last_commit": {
            "height": "1534",
            "round": 0,
            "block_id": {
                "hash": "e8+lA66E21id0jLCSZKZbqlLR2USn0L09Nx2WoeloJ8=",
                "part_set_header": {
                    "total": 1,
                    "hash": "GHuPppYO548tjTD/o6y7Nm5IR/YT3MyTcjL+PRTaAg8=",
                },
            },
            "signatures": [
                {
                    "block_id_flag": "BLOCK_ID_FLAG_COMMIT",
                    "validator_address": "INaK2jlx5kaWGmLEq5dHYK4y6RI=",
                    "timestamp": "2023-04-27T14:35:01.432976256Z",
                    "signature": (
                        "JBh/5ocUKFhje5E+ynersX5WYCOO4E8fTqH2LWrSCcqUgcZmk"
                        "QOBFe1zmYjaoiYN7B3SiErurBmfy5S1VHuVDA=="
                    ),
                }
            ],
        },
    },
}

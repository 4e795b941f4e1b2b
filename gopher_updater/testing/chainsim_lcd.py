"""What a Cosmos SDK LCD (grpc-gateway, port 1317) puts on the wire, as pure functions.

The simulator's HTTP layer (`chainsim_endpoint.py`) calls these; keeping them free of
sockets and clocks lets the encoding rules be read against the SDK source they copy
(`/work/shared/reference/cosmos-lcd.md` §1, §2.5): gogo JSONPb (int64 as strings, enums as
names, `null` for absent messages, compact JSON from v0.47, Go's HTML-safe string escaping)
and the gateway's error bodies. Governance lives next door: query parsing and pagination in
`chainsim_pages`, proposals and the v1 -> v1beta1 conversion in `chainsim_proposals`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import attrs

from gopher_updater.model import Plan
from gopher_updater.testing.chainsim_block import BLOCK_TEMPLATE

__all__ = ["BLOCK_TEMPLATE"]  # plus everything defined here

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

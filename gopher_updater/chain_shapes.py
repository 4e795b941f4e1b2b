"""JSON shapes of the Cosmos LCD answers, as frozen attrs classes, and the int64 rule.

Why a separate module: the shapes say *what* the SDK sends (cosmos-lcd reference §1-2:
int64 as decimal strings, `null` for an absent message, proto names); `chain_json.py` says
*how* a body becomes one of them (the converter, its hooks, the depth and key limits). Only
the fields the daemon uses are modelled; unknown keys are ignored (chains add fields).
"""

from __future__ import annotations

import re
from typing import Any, NewType

import attrs

from gopher_updater.model import Plan, ProposalStatus, UpgradeProposal

#: Proto int64 as gogo JSONPb writes it: a decimal string. Signed.
Int64 = NewType("Int64", int)
#: A count or height that is never negative (block heights, proposal ids, applied heights).
UInt64 = NewType("UInt64", int)

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
_INT_RE = re.compile(r"-?[0-9]{1,19}")


class MalformedJSON(Exception):
    """The body is not JSON, or not the shape the SDK sends; `reason` says where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_int64(value: object, *, minimum: int = INT64_MIN) -> int:
    """Strictly parse a proto int64 (decimal string, or a JSON integer) within [minimum, max]."""
    if isinstance(value, bool):
        raise ValueError(f"expected an int64, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INT_RE.fullmatch(value):
        number = int(value)
    else:
        raise ValueError(f"expected an int64 string, got {snip(value)}")
    if not minimum <= number <= INT64_MAX:
        raise ValueError(f"{number} is outside [{minimum}, {INT64_MAX}]")
    return number


# --- shapes -------------------------------------------------------------------------------


@attrs.frozen
class PlanJSON:
    name: str
    height: Int64
    info: str = ""

    def to_model(self) -> Plan:
        return Plan(name=self.name, height=self.height, info=self.info)


@attrs.frozen
class ScheduledPlanJSON:
    """`current_plan`'s plan: a negative height is malformed there (0 is "no plan")."""

    name: str
    height: UInt64
    info: str = ""

    def to_model(self) -> Plan:
        return Plan(name=self.name, height=self.height, info=self.info)


@attrs.frozen
class CurrentPlanJSON:
    plan: ScheduledPlanJSON | None  # required key: `{"plan": null}` when nothing is scheduled


@attrs.frozen
class AppliedPlanJSON:
    height: UInt64


@attrs.frozen
class HeaderJSON:
    height: UInt64
    time: str = ""
    #: Untyped on purpose: a strange chain_id is dropped by `latest_block`, never fatal.
    chain_id: Any = ""


@attrs.frozen
class BlockJSON:
    header: HeaderJSON


@attrs.frozen
class BlocksLatestJSON:
    block: BlockJSON | None = None
    sdk_block: BlockJSON | None = None


@attrs.frozen
class UpgradeAny:
    """A protobuf `Any` reduced to the upgrade plan it carries, if any (see `_structure_any`)."""

    plan: PlanJSON | None


@attrs.frozen
class PageJSON:
    next_key: str | None = None


@attrs.frozen
class ProposalV1JSON:
    id: UInt64
    status: ProposalStatus
    messages: list[UpgradeAny] = attrs.Factory(list)


@attrs.frozen
class ProposalV1beta1JSON:
    proposal_id: UInt64
    status: ProposalStatus
    content: UpgradeAny | None = None


@attrs.frozen
class ProposalsV1JSON:
    proposals: list[ProposalV1JSON]
    pagination: PageJSON | None = None


@attrs.frozen
class ProposalsV1beta1JSON:
    proposals: list[ProposalV1beta1JSON]
    pagination: PageJSON | None = None


@attrs.frozen
class ErrorJSON:
    """grpc-gateway error body; legacy REST (<= v0.45) sends `{"error": "..."}` instead."""

    code: int | None = None
    message: str | None = None
    error: str | None = None


@attrs.frozen
class ProposalPage:
    """One page of a proposal listing, already reduced to the upgrades on it."""

    upgrades: list[UpgradeProposal]
    next_key: str | None
    size: int  # proposals on the page, upgrades or not (diagnostics only)
    #: Ids of every proposal on the page, upgrades or not: where a listing walk has got to.
    ids: tuple[int, ...] = ()


def snip(value: object) -> str:
    """A short repr of an untrusted value for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

"""The one cattrs converter that reads Cosmos LCD answers, and the decoders built on it.

Why a separate module: `chain.py` owns I/O and error mapping; this module owns "is this body
what the SDK would send?" (the shapes themselves are in `chain_shapes.py`). Everything here
is pure (bytes in, model values out) and raises `MalformedJSON` with a path-qualified
reason, which the client turns into `ChainMalformed`.

Strictness is deliberate. The daemon retags production images on the strength of these
numbers, so `"12a"`, `""`, `1.5`, `true` or a value beyond int64 is an error, not a guess.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.v import format_exception

from gopher_updater.chain_shapes import (
    AppliedPlanJSON,
    BlocksLatestJSON,
    CurrentPlanJSON,
    ErrorJSON,
    HeaderJSON,
    Int64,
    MalformedJSON,
    PageJSON,
    PlanJSON,
    ProposalPage,
    ProposalsV1beta1JSON,
    ProposalsV1JSON,
    UInt64,
    UpgradeAny,
    parse_int64,
    snip,
)
from gopher_updater.model import Plan, ProposalStatus, UpgradeProposal, scheduled

#: Deepest nesting accepted. Real answers nest about 8 levels (a block, a legacy proposal);
#: anything deeper is hostile and would only cost stack and time in the structuring hooks.
MAX_DEPTH = 64
#: A `next_key` is base64 of a store key (8 bytes for a proposal, `AAAAAAAAAx0=`); a key
#: longer than this is not a key and would only make the next URL too long.
MAX_NEXT_KEY = 512
_BASE64_RE = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
#: RFC 3339 as CometBFT writes block times, loosely: printable, bounded, nothing to escape.
#: Tendermint/CometBFT chain ids: at most 50 characters; we accept the usual alphabet.
_CHAIN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,49}")
_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{8,24}(Z|[+-][0-9]{2}:[0-9]{2})")

MSG_SOFTWARE_UPGRADE = "/cosmos.upgrade.v1beta1.MsgSoftwareUpgrade"
SOFTWARE_UPGRADE_PROPOSAL = "/cosmos.upgrade.v1beta1.SoftwareUpgradeProposal"
MSG_EXEC_LEGACY_CONTENT = "/cosmos.gov.v1.MsgExecLegacyContent"
_PLAN_CARRIERS = frozenset({MSG_SOFTWARE_UPGRADE, SOFTWARE_UPGRADE_PROPOSAL})

T = TypeVar("T")


# --- the converter ------------------------------------------------------------------------


def _structure_str(value: object, _type: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {snip(value)}")
    return value


def _structure_int(value: object, _type: object) -> int:
    return parse_int64(value)


def _structure_status(value: object, _type: object) -> ProposalStatus:
    if isinstance(value, str) and value.startswith("PROPOSAL_STATUS_"):
        name = value.removeprefix("PROPOSAL_STATUS_")
        if name in ProposalStatus.__members__:
            return ProposalStatus[name]
        raise ValueError(f"unknown proposal status {snip(value)}")
    number = parse_int64(value, minimum=0)
    try:
        return ProposalStatus(number)
    except ValueError:
        raise ValueError(f"unknown proposal status {number}") from None


def _structure_any(value: object, _type: object, *, depth: int = 0) -> UpgradeAny:
    """Find the plan in a message/content `Any`, whichever of the four encodings it uses.

    `MsgSoftwareUpgrade` and `SoftwareUpgradeProposal` carry `plan` directly;
    `MsgExecLegacyContent` wraps a legacy content in `content` (one level deep in practice).
    Any other type (text, params, cancel, ...) carries no plan.
    """
    if not isinstance(value, dict):
        raise ValueError(f"expected an Any object, got {snip(value)}")
    type_url = value.get("@type")
    if type_url in _PLAN_CARRIERS:
        if "plan" not in value:
            raise ValueError(f"{type_url} without a plan")
        return UpgradeAny(plan=converter.structure(value["plan"], PlanJSON))
    if type_url == MSG_EXEC_LEGACY_CONTENT and depth < 2:
        content = value.get("content")
        if content is None:
            return UpgradeAny(plan=None)
        return _structure_any(content, UpgradeAny, depth=depth + 1)
    return UpgradeAny(plan=None)


converter = cattrs.Converter(forbid_extra_keys=False)
converter.register_structure_hook(str, _structure_str)
converter.register_structure_hook(int, _structure_int)
converter.register_structure_hook(Int64, _structure_int)
converter.register_structure_hook(UInt64, lambda v, _t: parse_int64(v, minimum=0))
converter.register_structure_hook(ProposalStatus, _structure_status)
converter.register_structure_hook(UpgradeAny, _structure_any)


# --- decoders -----------------------------------------------------------------------------


def structure(body: bytes, cls: type[T]) -> T:
    """Parse `body` as JSON and structure it as `cls`, or raise `MalformedJSON`."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and bad UTF-8 are ValueErrors
        reason = f"not JSON ({type(exc).__name__}: {str(exc)[:120]}); body {snip(body)}"
        raise MalformedJSON(reason) from None
    _check_depth(data)
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # cattrs wraps hook errors in (nested) exception groups
        raise MalformedJSON(_describe(exc)) from exc


def current_plan(body: bytes) -> Plan | None:
    """The plan as sent; a height of 0 is "no plan", which `model.PlanAnswer` normalises."""
    plan = structure(body, CurrentPlanJSON).plan
    return None if plan is None else plan.to_model()


def applied_height(body: bytes) -> int:
    return structure(body, AppliedPlanJSON).height


def latest_block(body: bytes) -> HeaderJSON:
    answer = structure(body, BlocksLatestJSON)
    block = answer.block if answer.block is not None else answer.sdk_block
    if block is None:
        raise MalformedJSON("neither block.header nor sdk_block.header is present @ $")
    header = block.header
    if _TIME_RE.fullmatch(header.time) is None:
        # The time is only shown to operators: a strange one is dropped, not fatal, so it
        # can never cost the halt observation this answer is read for.
        header = attrs.evolve(header, time="")
    chain_id = header.chain_id
    if not isinstance(chain_id, str) or _CHAIN_ID_RE.fullmatch(chain_id) is None:
        # Only the Flux nudge's event body carries it: like the time, never worth the halt.
        header = attrs.evolve(header, chain_id="")
    return header


def proposals_v1(body: bytes) -> ProposalPage:
    answer = structure(body, ProposalsV1JSON)
    upgrades = []
    for item in answer.proposals:
        # Messages run in order and a later schedule overwrites an earlier one: last wins.
        plans = [m.plan for m in item.messages if m.plan is not None]
        if plans:
            upgrades.append(_upgrade(item.id, item.status, plans[-1]))
    return _page(upgrades, answer.pagination, tuple(item.id for item in answer.proposals))


def proposals_v1beta1(body: bytes) -> ProposalPage:
    answer = structure(body, ProposalsV1beta1JSON)
    upgrades = [
        _upgrade(item.proposal_id, item.status, item.content.plan)
        for item in answer.proposals
        if item.content is not None and item.content.plan is not None
    ]
    return _page(upgrades, answer.pagination, tuple(i.proposal_id for i in answer.proposals))


def error_body(body: bytes) -> ErrorJSON | None:
    """The LCD's own error (`code`, `message`), or None when the body is not such JSON."""
    try:
        return structure(body, ErrorJSON)
    except MalformedJSON:
        return None


# --- helpers ------------------------------------------------------------------------------


def _upgrade(proposal_id: int, status: ProposalStatus, plan: PlanJSON) -> UpgradeProposal:
    return UpgradeProposal(id=proposal_id, status=status, plan=plan.to_model())


def _page(
    found: list[UpgradeProposal], page: PageJSON | None, ids: tuple[int, ...]
) -> ProposalPage:
    upgrades = [u for u in found if scheduled(u.plan) is not None]  # not signal proposals
    next_key = page.next_key if page is not None and page.next_key else None
    if next_key is not None:
        _check_next_key(next_key)
    return ProposalPage(upgrades=upgrades, next_key=next_key, size=len(ids), ids=ids)


def _check_next_key(key: str) -> None:
    """A `next_key` goes back to the LCD in a URL: it must be the base64 it claims to be."""
    if len(key) > MAX_NEXT_KEY:
        raise MalformedJSON(f"pagination.next_key is {len(key)} characters (limit {MAX_NEXT_KEY})")
    if _BASE64_RE.fullmatch(key) is None:
        raise MalformedJSON(f"pagination.next_key {snip(key)} is not base64")
    try:
        base64.b64decode(key.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedJSON(f"pagination.next_key {snip(key)} is not base64") from None


def _check_depth(data: object) -> None:
    """Refuse nesting deeper than MAX_DEPTH, iteratively (no recursion to exhaust)."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_DEPTH:
            raise MalformedJSON(f"JSON nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _describe(exc: BaseException) -> str:
    try:
        messages = cattrs.transform_error(exc, format_exception=_format_leaf)
    except Exception:
        messages = [f"{type(exc).__name__}: {exc}"]
    return "; ".join(m[:200] for m in messages[:3]) or type(exc).__name__


def _format_leaf(exc: BaseException, type_: type | None) -> str:
    # Our hooks raise ValueError with a precise reason ("expected an int64 string, got '12a'").
    if isinstance(exc, ValueError) and type(exc) is ValueError:
        return str(exc)
    return format_exception(exc, type_)

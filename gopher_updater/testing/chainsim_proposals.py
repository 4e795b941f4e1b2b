"""Gov proposals in the simulator: made up by tests, stored, converted to v1beta1, listed.

The v1 -> v1beta1 conversion is the SDK's (`x/gov/migrations/v3`, v0.46-v0.50), including
its whole-page failure on a proposal with != 1 message; made-up proposals are shaped like
the Cosmos Hub captures (`/work/shared/reference/cosmos-lcd.md` §3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gopher_updater.model import Plan, ProposalStatus
from gopher_updater.testing import chainsim_pages as pages
from gopher_updater.testing.chainsim_lcd import (
    CANCEL_SOFTWARE_UPGRADE_PROPOSAL,
    ENCODINGS,
    GOV_AUTHORITY,
    MSG_CANCEL_UPGRADE,
    MSG_EXEC_LEGACY_CONTENT,
    MSG_SOFTWARE_UPGRADE,
    SOFTWARE_UPGRADE_PROPOSAL,
    TEXT_PROPOSAL,
    V1BETA1_CONVERSION_MESSAGE,
    ZERO_TIME,
    Answer,
    JsonDict,
    LcdError,
    error_answer,
    plan_json,
)

_ANSWER_CACHE_SIZE = 256

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


# --- the chain's proposal store -------------------------------------------------------------


class ProposalStore:
    """The chain's gov proposals and the listings nodes serve from them (cached by query).

    `v1beta1_items`, when given, are served verbatim on v1beta1 (an SDK v0.45 chain, whose
    store holds legacy `content`); otherwise v1beta1 converts the v1 items like v0.46+.
    """

    def __init__(
        self,
        v1_items: list[JsonDict] | None = None,
        v1beta1_items: list[JsonDict] | None = None,
        *,
        filtered_pagination_bug: bool = False,
    ) -> None:
        self.filtered_pagination_bug = filtered_pagination_bug
        self.v1: dict[int, JsonDict] = {int(item["id"]): item for item in v1_items or ()}
        self.v1beta1: dict[int, JsonDict] | None = None
        if v1beta1_items is not None:
            self.v1beta1 = {int(item["proposal_id"]): item for item in v1beta1_items}
        self._cache: dict[tuple[bool, str, bool], Answer] = {}

    def add(
        self, proposal_id: int, status: ProposalStatus, plan: Plan | None, encoding: str
    ) -> None:
        self.v1[proposal_id] = make_v1_proposal(proposal_id, status, plan, encoding)
        if self.v1beta1 is not None:
            self.v1beta1[proposal_id] = make_v1beta1_proposal(proposal_id, status, plan, encoding)
        self._cache.clear()

    def answer(self, v1beta1: bool, query: str) -> Answer:
        """One page of a listing (cached: the same pages are asked again and again)."""
        key = (v1beta1, query, self.filtered_pagination_bug)
        cached = self._cache.get(key)
        if cached is None:
            try:
                cached = Answer(200, self._page(v1beta1, query))
            except LcdError as err:
                cached = error_answer(err)
            if len(self._cache) >= _ANSWER_CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = cached
        return cached

    def _page(self, v1beta1: bool, query: str) -> bytes:
        parsed = pages.parse_proposals_query(query)
        match = pages.status_filter(parsed.status)
        source = self.v1beta1 if v1beta1 and self.v1beta1 is not None else self.v1
        entries = [(pages.store_key(i), source[i]) for i in sorted(source)]
        bug = self.filtered_pagination_bug
        page = pages.paginate(entries, parsed.page, match, sdk050_bug=bug)
        items = page.items
        if v1beta1 and self.v1beta1 is None:
            items = [v1_to_v1beta1(item) for item in page.items]
        return pages.proposals_body(items, page)


def load_cosmoshub_proposals(fixtures_dir: Path) -> list[dict[str, Any]]:
    """The 218 real Cosmos Hub proposals of the three captured pages, in id order."""
    proposals: list[dict[str, Any]] = []
    for page in (1, 2, 3):
        path = fixtures_dir / f"gov_v1_proposals_cosmoshub_page{page}_of3.json"
        proposals.extend(json.loads(path.read_text())["proposals"])
    return sorted(proposals, key=lambda item: int(item["id"]))

"""Values shared by the chain client, the promotion rule, the registry client and the tasks.

They are frozen attrs classes so they can be compared, hashed (deduplicating retag jobs) and
passed between tasks without anyone mutating them behind another task's back. Decoding
normalises here too: "height <= 0 means no plan" is said once, in `scheduled`.
"""

from __future__ import annotations

import enum
import re

import attrs

#: OCI / Docker tag grammar. Everything from the chain is untrusted: a plan name only
#: becomes part of a tag if the whole tag matches this.
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
#: Distribution's repository grammar (lower case; path components joined by `/`).
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")


def is_valid_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None


@attrs.frozen
class Digest:
    """A content digest (`sha256:<64 hex>`), validated so a header can't smuggle junk in."""

    value: str = attrs.field()

    @value.validator
    def _check(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if DIGEST_RE.fullmatch(value) is None:
            raise ValueError(f"not a sha256 digest: {value[:80]!r}")

    def __str__(self) -> str:
        return self.value

    @property
    def short(self) -> str:
        return self.value[:19]


@attrs.frozen
class Plan:
    """An upgrade plan as `current_plan` (or a proposal) states it: name, height H, info."""

    name: str
    height: int
    info: str = ""


def scheduled(plan: Plan | None) -> Plan | None:
    """`plan` when it schedules an upgrade, else None: a height <= 0 means no plan.

    The SDK refuses to schedule such a plan, and a proposal carrying one is a signal proposal
    (Cosmos Hub 38), not an upgrade. This is the only place that says so: `PlanAnswer` and
    the proposal decoder both go through it, so nothing downstream checks heights again.
    """
    return plan if plan is not None and plan.height > 0 else None


@attrs.frozen
class Height:
    """One observation of `blocks/latest`.

    `block` is the block-store height (`block.header.height`); `app` is the application's
    last committed height from the `X-Cosmos-Block-Height` header, when the node sends it.
    At an upgrade halt the block store holds H while the app stays at H-1.
    """

    block: int
    app: int | None = None
    time: str | None = None
    #: `block.header.chain_id` (None when absent or not a plausible chain id). Not part of
    #: the observation's identity (eq=False): it only names the chain in the Flux event.
    chain_id: str | None = attrs.field(default=None, eq=False)


class ProposalStatus(enum.IntEnum):
    UNSPECIFIED = 0
    DEPOSIT_PERIOD = 1
    VOTING_PERIOD = 2
    PASSED = 3
    REJECTED = 4
    FAILED = 5


@attrs.frozen
class UpgradeProposal:
    """A governance proposal that carries a software-upgrade plan (any of the 4 encodings)."""

    id: int
    status: ProposalStatus
    plan: Plan


class RetagReason(enum.StrEnum):
    """Why a retag is due; for logs and `/status`, never for deciding anything."""

    HALT = "halt"  # the halt was seen and confirmed (the time-critical path)
    APPLIED = "applied"  # the plan vanished and applied_plan says the chain applied it
    CATCH_UP = "catch-up"  # at start-up: the newest passed upgrade was applied meanwhile


@attrs.frozen
class RetagJob:
    """Promote `source_tag` to `target_tag` for `plan`. Hashable: the daemon dedupes on it."""

    plan: Plan
    source_tag: str
    target_tag: str
    reason: RetagReason = attrs.field(default=RetagReason.HALT, eq=False)
    #: For a halt job: trio.current_time() of the poll that saw block H with the plan
    #: current, and the chain id that block's header named. Facts about the job, not its
    #: identity (eq=False): they feed the delays and the Flux nudge's event only.
    halt_seen_at: float | None = attrs.field(default=None, eq=False)
    chain_id: str | None = attrs.field(default=None, eq=False)


@attrs.frozen
class PlanAnswer:
    """One `current_plan` answer: the plan (None = nothing scheduled) and the app height.

    A plan with a height <= 0 becomes None on construction (`scheduled`), so every reader of
    an answer sees "no plan" one way only.

    `app_height` comes from the `X-Cosmos-Block-Height` response header (None when the node
    does not send it). It lets an idle poll learn the chain height without `blocks/latest`,
    but it is NOT evidence of a halt: at the halt the app stays at H-1.
    """

    plan: Plan | None = attrs.field(converter=scheduled)
    app_height: int | None = None

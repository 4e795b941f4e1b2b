"""Several LCD endpoints of one chain, asked concurrently: the pool behind `RPC_URL`.

Why: at the halt the node behind one LCD may be the one restarting, and a load balancer may
send a poll to a backend blocks behind. Each poll (`sight`) asks every endpoint at once, each
in its own task under one nursery, each bounded by `REQUEST_TIMEOUT`, the reads the rule
wants on that endpoint: current_plan, blocks/latest when `needs_block` says so, and
current_plan again when that endpoint's own two reads show a halt (`wants_reread`). The
poll returns as soon as it can decide:

- every endpoint answered; or
- `enough` holds (a quorum of endpoints confirmed a halt: nothing more can change that); or
- a quorum of endpoints answered and `GRACE` passed since: a hung peer costs at most the
  grace, never a whole timeout (it is then cut off, counted as failed, and backed off).

An endpoint that fails is skipped for a backoff (1 s doubling to 30 s) while another one
can be asked, then re-probed by the next poll; with one endpoint nothing is ever skipped,
so one endpoint keeps exactly the single-LCD request pattern. The pool owns each endpoint's
health (up, height, last error, freshness): written only by `sight`, published as a frozen
`LcdView`. Governance and `check` read through the same `ChainReader` methods as a single
`ChainClient`, from the most advanced healthy endpoint (`lead`).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Protocol, TypeVar

import attrs
import httpx
import trio

from gopher_updater import rule_records
from gopher_updater.chain import ChainClient
from gopher_updater.chain_errors import ChainError, ChainTimeout
from gopher_updater.chain_gov import UpgradeListing
from gopher_updater.logs import get_logger
from gopher_updater.model import Height, PlanAnswer, ProposalStatus, UpgradeProposal
from gopher_updater.views import LcdEndpointView, LcdView

log = get_logger("gopher_updater.lcd_pool")

GRACE = 0.25  # seconds the stragglers get once a quorum of endpoints answered
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
T = TypeVar("T")


class ChainReader(Protocol):
    async def current_plan(self) -> PlanAnswer: ...

    async def latest_height(self) -> Height: ...

    async def applied_height(self, name: str) -> int: ...


class Counts(Protocol):
    """The pool's metrics sink (`Metrics` in the daemon); see `metrics.py`."""

    def lcd_request(self, endpoint: str, route: str, result: str) -> None: ...

    def lcd_state(self, endpoint: str, up: bool, height: int | None) -> None: ...


@attrs.define
class _Member:
    label: str
    chain: Any  # a ChainReader; also the proposal reader for governance
    up: bool | None = None  # None: not asked yet
    height: int | None = None
    last_ok: float | None = None
    last_ok_unix: float | None = None
    last_error: str | None = None
    failures: int = 0  # consecutive
    retry_at: float = -math.inf  # skipped before this (trio time) while others can answer

    def view(self) -> LcdEndpointView:
        return LcdEndpointView(
            label=self.label,
            up=self.up,
            height=self.height,
            last_ok=self.last_ok,
            last_ok_unix=self.last_ok_unix,
            last_error=self.last_error,
            failures=self.failures,
        )


class LcdPool:
    """The endpoints of `RPC_URL`; see the module docstring."""

    def __init__(
        self,
        members: Sequence[tuple[str, Any]],
        *,
        request_timeout: float,
        quorum: int = 1,
        grace: float = GRACE,
        metrics: Counts | None = None,
    ) -> None:
        if not members or not 1 <= quorum <= len(members):
            raise ValueError(f"quorum {quorum} needs 1 to {len(members)} endpoints")
        self._members = [_Member(label, chain) for label, chain in _unique(members)]
        self.request_timeout = request_timeout
        self.quorum = quorum
        self.grace = min(grace, request_timeout)
        self._metrics = metrics
        self._view = self._make_view()
        for member in self._members:
            if metrics is not None:
                metrics.lcd_state(member.label, False, None)

    @classmethod
    def single(cls, chain: Any, *, request_timeout: float, label: str = "") -> LcdPool:
        return cls(
            [(label or getattr(chain, "origin", "") or "lcd", chain)],
            request_timeout=request_timeout,
        )

    @property
    def view(self) -> LcdView:
        return self._view

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self._members]

    def members(self) -> list[tuple[str, Any]]:
        """(label, chain client) of every endpoint, in `RPC_URL` order (for `check`)."""
        return [(m.label, m.chain) for m in self._members]

    def _make_view(self) -> LcdView:
        return LcdView(tuple(m.view() for m in self._members), self.quorum)

    # --- one poll -------------------------------------------------------------------------

    async def sight(
        self,
        needs_block: Callable[[PlanAnswer], bool],
        wants_reread: Callable[[PlanAnswer, Height | None], bool],
        enough: Callable[[Sequence[rule_records.Sighting]], bool] = lambda _: False,
    ) -> tuple[rule_records.Sighting, ...]:
        """Ask every endpoint due (see the module docstring); one `Sighting` per endpoint
        asked, in `RPC_URL` order (a failed or cut-off one has `plan` None)."""
        now = trio.current_time()
        due = [m for m in self._members if m.retry_at <= now] or list(self._members)
        results: dict[str, rule_records.Sighting] = {}
        errors: dict[str, str] = {}
        changed = trio.Event()

        async def one(member: _Member) -> None:
            nonlocal changed
            try:
                results[member.label] = await self._sight_one(member, needs_block, wants_reread)
            except (ChainError, trio.TooSlowError) as exc:
                errors[member.label] = _why(exc, self.request_timeout)
            changed.set()
            changed = trio.Event()

        async with trio.open_nursery() as nursery:
            for member in due:
                nursery.start_soon(one, member)
            decided = False  # a quorum confirmed the halt: the rest is not needed
            with trio.move_on_after(self.request_timeout):
                grace_at = math.inf
                while len(results) + len(errors) < len(due):
                    ok = [s for s in results.values() if s.plan is not None]
                    if enough(ok):
                        decided = True
                        break
                    if len(ok) >= min(self.quorum, len(due)) and grace_at == math.inf:
                        grace_at = trio.current_time() + self.grace
                    with trio.move_on_at(grace_at) as waiting:
                        await changed.wait()
                    if waiting.cancelled_caught:
                        break
            nursery.cancel_scope.cancel()
        if decided:  # stragglers were not late, just not needed: their health stands
            due = [m for m in due if m.label in results or m.label in errors]
        for member in due:
            if member.label not in results and member.label not in errors:
                errors[member.label] = (
                    f"no answer within {self.request_timeout:g}s"
                    if not any(s.plan for s in results.values())
                    else f"no answer within {self.grace:g}s of the other endpoints"
                )
        self._settle(due, results, errors)
        asked = {m.label for m in due}
        return tuple(
            results.get(m.label, rule_records.Sighting(m.label, None))
            for m in self._members
            if m.label in asked
        )

    async def _sight_one(
        self,
        member: _Member,
        needs_block: Callable[[PlanAnswer], bool],
        wants_reread: Callable[[PlanAnswer, Height | None], bool],
    ) -> rule_records.Sighting:
        chain = member.chain
        with trio.fail_after(self.request_timeout):
            answer = await self._ask(member, "current_plan", chain.current_plan)
            height: Height | None = None
            if needs_block(answer):
                height = await self._ask(member, "blocks_latest", chain.latest_height)
            reread = None
            if wants_reread(answer, height):
                try:
                    reread = await self._ask(member, "current_plan", chain.current_plan)
                except ChainError as exc:
                    log.warning(
                        "halt seen but the plan could not be re-read; asking again next poll",
                        endpoint=member.label,
                        plan=answer.plan.name[:200] if answer.plan else None,
                        error=str(exc),
                    )
        return rule_records.Sighting(member.label, answer, height, reread)

    def _settle(
        self, due: list[_Member], results: dict[str, rule_records.Sighting], errors: dict[str, str]
    ) -> None:
        """Record each endpoint's health after a poll; log only changes."""
        now, unix = trio.current_time(), time.time()
        for member in due:
            sighting = results.get(member.label)
            if sighting is not None:
                if member.up is False:
                    log.info("LCD endpoint reachable again", endpoint=member.label)
                member.up, member.failures, member.last_error = True, 0, None
                member.last_ok, member.last_ok_unix = now, unix
                member.retry_at = -math.inf
                member.height = sighting.reached if sighting.reached is not None else member.height
            else:
                error = errors.get(member.label, "no answer")
                if member.up is not False:
                    log.warning("LCD endpoint failing", endpoint=member.label, error=error)
                member.up, member.last_error = False, error
                member.failures += 1
                backoff = min(BACKOFF_FIRST * 2 ** (member.failures - 1), BACKOFF_MAX)
                member.retry_at = now + backoff
            if self._metrics is not None:
                self._metrics.lcd_state(member.label, bool(member.up), member.height)
        self._view = self._make_view()

    # --- applied_plan from several endpoints ----------------------------------------------

    async def applied(
        self, name: str, sightings: Sequence[rule_records.Sighting]
    ) -> tuple[rule_records.AppliedAnswer, ...]:
        """`applied_plan/{name}` from every endpoint that answered this poll, concurrently.

        Raises the first `ChainError` when no endpoint answered (so a single endpoint
        fails exactly as `ChainClient.applied_height` does)."""
        members = {m.label: m for m in self._members}
        asked = [s for s in sightings if s.plan is not None and s.endpoint in members]
        answers: list[rule_records.AppliedAnswer] = []
        failures: list[BaseException] = []

        async def one(s: rule_records.Sighting) -> None:
            member = members[s.endpoint]
            try:
                with trio.fail_after(self.request_timeout):
                    height = await self._ask(
                        member, "applied_plan", lambda: member.chain.applied_height(name)
                    )
            except (ChainError, trio.TooSlowError) as exc:
                failures.append(exc)
                return
            answers.append(rule_records.AppliedAnswer(s.endpoint, height, s))

        async with trio.open_nursery() as nursery:
            for s in asked:
                nursery.start_soon(one, s)
        if not answers:
            if failures and isinstance(failures[0], ChainError):
                raise failures[0]
            raise ChainTimeout("applied_plan", "no endpoint answered")
        return tuple(answers)

    # --- reads for governance and check: the most advanced healthy endpoint ---------------

    def lead(self) -> Any:
        """The chain of the most advanced endpoint that answered its last poll (else the
        first listed)."""
        healthy = [m for m in self._members if m.up]
        if not healthy:
            return self._members[0].chain
        return max(healthy, key=lambda m: -1 if m.height is None else m.height).chain

    async def current_plan(self) -> PlanAnswer:
        return await self._lead_ask("current_plan", lambda c: c.current_plan())

    async def latest_height(self) -> Height:
        return await self._lead_ask("blocks_latest", lambda c: c.latest_height())

    async def applied_height(self, name: str) -> int:
        return await self._lead_ask("applied_plan", lambda c: c.applied_height(name))

    async def upgrade_proposals(
        self, status: ProposalStatus | None = None, *, page_limit: int = 100
    ) -> list[UpgradeProposal]:
        return await self._lead_ask(
            "proposals", lambda c: c.upgrade_proposals(status, page_limit=page_limit)
        )

    async def newest_upgrade_proposals(
        self, status: ProposalStatus | None = None, *, want: int = 1, page_limit: int = 50
    ) -> list[UpgradeProposal]:
        return await self._lead_ask(
            "proposals",
            lambda c: c.newest_upgrade_proposals(status, want=want, page_limit=page_limit),
        )

    async def newest_upgrades(
        self,
        status: ProposalStatus | None = None,
        *,
        want: int = 1,
        page_limit: int = 50,
        since: UpgradeListing | None = None,
        reopen: frozenset[int] = frozenset(),
    ) -> UpgradeListing:
        return await self._lead_ask(
            "proposals",
            lambda c: c.newest_upgrades(
                status, want=want, page_limit=page_limit, since=since, reopen=reopen
            ),
        )

    async def _lead_ask(self, route: str, call: Callable[[Any], Awaitable[T]]) -> T:
        chain = self.lead()
        member = next(m for m in self._members if m.chain is chain)
        return await self._ask(member, route, lambda: call(chain))

    async def _ask(self, member: _Member, route: str, call: Callable[[], Awaitable[T]]) -> T:
        """One read, counted per endpoint, route and result (`proposals` = one listing)."""
        result = "cancelled"
        try:
            value = await call()
            result = "ok"
            return value
        except ChainTimeout:
            result = "timeout"
            raise
        except ChainError:
            result = "error"
            raise
        finally:
            if self._metrics is not None:
                self._metrics.lcd_request(member.label, route, result)


def _why(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, trio.TooSlowError):
        return f"no answer within REQUEST_TIMEOUT ({timeout:g}s)"
    return str(exc)


def _unique(members: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Labels made unique (two paths on one host:port): the later ones get `#2`, `#3`..."""
    seen: dict[str, int] = {}
    out = []
    for label, chain in members:
        seen[label] = seen.get(label, 0) + 1
        out.append((label if seen[label] == 1 else f"{label}#{seen[label]}", chain))
    return out


@asynccontextmanager
async def open_pool(cfg: Any, metrics: Counts | None = None) -> AsyncIterator[LcdPool]:
    """One `ChainClient` per `cfg.lcd_endpoints`, each with its own Basic auth (split off the
    URL by config: credentials travel only in the Authorization header), as a pool."""
    async with AsyncExitStack() as stack:
        members = []
        for endpoint in cfg.lcd_endpoints:
            auth = None
            if endpoint.auth is not None:
                user, password = endpoint.auth
                auth = httpx.BasicAuth(user, password.reveal())
            client = ChainClient(endpoint.url, timeout=cfg.request_timeout, auth=auth)
            members.append((endpoint.label, await stack.enter_async_context(client)))
        yield LcdPool(
            members, request_timeout=cfg.request_timeout, quorum=cfg.rpc_quorum, metrics=metrics
        )

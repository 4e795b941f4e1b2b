"""Read-only client for the Cosmos SDK LCD (REST gateway): plan, heights, upgrade proposals.

Why it is shaped this way:
- Every request runs inside `trio.fail_after(timeout)` covering connect, headers AND body, so
  a node that trickles one byte a second cannot stall the watcher past its deadline (httpx's
  own timeouts are per socket operation and would let it).
- Every failure is a `ChainError` naming the endpoint and the reason; no KeyError, ValueError
  or httpx exception escapes. The daemon treats any of them as "no observation", which the
  promotion rule never turns into a promotion.
- `current_plan` also returns the app height from the response header, so the idle poll is
  one small request; `blocks/latest` (~4 KB) is only needed while a plan is near.
- Proposal listings follow `next_key` to the end and never trust `pagination.total`, and an
  empty page with a `next_key` is not the end (SDK v0.50 filtered-pagination bug).
JSON shapes and strict number parsing live in `chain_json`.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TypeVar
from urllib.parse import quote

import attrs
import httpx
import trio

from gopher_updater import __version__, chain_json
from gopher_updater.chain_json import MalformedJSON, parse_int64
from gopher_updater.model import Height, PlanAnswer, ProposalStatus, UpgradeProposal

CURRENT_PLAN = "/cosmos/upgrade/v1beta1/current_plan"
APPLIED_PLAN = "/cosmos/upgrade/v1beta1/applied_plan/"
BLOCKS_LATEST = "/cosmos/base/tendermint/v1beta1/blocks/latest"
GOV_V1_PROPOSALS = "/cosmos/gov/v1/proposals"
GOV_V1BETA1_PROPOSALS = "/cosmos/gov/v1beta1/proposals"
#: v0.53 sends the plain header, v0.47–v0.50 only the grpc-gateway metadata one.
HEIGHT_HEADERS = ("X-Cosmos-Block-Height", "Grpc-Metadata-X-Cosmos-Block-Height")

MAX_BODY = 16 * 1024 * 1024  # a Cosmos Hub page of 100 v1 proposals is ~180 KB
MAX_PAGES = 1000  # a runaway next_key chain must end somewhere

T = TypeVar("T")


class ChainError(Exception):
    """The LCD gave no usable answer. `endpoint` is the path asked, `reason` says why."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(endpoint, reason)
        self.endpoint = endpoint
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.endpoint}: {self.reason}"


class ChainUnreachable(ChainError):
    """Connection refused, reset, or closed before the answer was complete."""


class ChainTimeout(ChainError):
    """No complete answer within the configured timeout."""


class ChainHTTPError(ChainError):
    """A non-2xx answer; `code`/`message` are the gRPC ones from the body when it has them."""

    def __init__(self, endpoint: str, status: int, code: int | None, message: str) -> None:
        detail = f"HTTP {status}" + (f", code {code}" if code is not None else "")
        super().__init__(endpoint, f"{detail}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ChainNotImplemented(ChainHTTPError):
    """HTTP 501: the node does not serve this route (gov v1 on SDK <= v0.45)."""


class ChainMalformed(ChainError):
    """The answer is not JSON, not the expected shape, or a number is not a valid int64."""


@attrs.frozen
class _Answer:
    body: bytes
    app_height: int | None


class ChainClient:
    """One LCD. Use as `async with ChainClient(url, timeout=5.0) as chain: ...`."""

    def __init__(
        self, base_url: str, *, timeout: float, client: httpx.AsyncClient | None = None
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        self._base = base_url.rstrip("/")
        self._password = httpx.URL(base_url).password
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout))
        #: None until the first listing; False once gov v1 answered 501 (then v1beta1 only).
        self.gov_v1: bool | None = None

    async def __aenter__(self) -> ChainClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # --- the four questions ---------------------------------------------------------------

    async def current_plan(self) -> PlanAnswer:
        """The scheduled plan (None when nothing is scheduled) and the app height header."""
        answer = await self._get(CURRENT_PLAN)
        plan = self._decode(CURRENT_PLAN, chain_json.current_plan, answer.body)
        return PlanAnswer(plan=plan, app_height=answer.app_height)

    async def latest_height(self) -> Height:
        """Block-store height of the newest block (H at an upgrade halt) plus the app height."""
        answer = await self._get(BLOCKS_LATEST)
        header = self._decode(BLOCKS_LATEST, chain_json.latest_block, answer.body)
        return Height(block=header.height, app=answer.app_height, time=header.time or None)

    async def applied_height(self, name: str) -> int:
        """The height at which plan `name` was applied, 0 if it never was (cancelled/replaced)."""
        path = APPLIED_PLAN + _path_segment(name)
        answer = await self._get(path)
        return self._decode(path, chain_json.applied_height, answer.body)

    async def upgrade_proposals(
        self, status: ProposalStatus | None = None, *, page_limit: int = 100
    ) -> list[UpgradeProposal]:
        """Every upgrade proposal (optionally with `status`), oldest first, all pages."""
        found: dict[int, UpgradeProposal] = {}
        key: str | None = None
        seen_keys: set[str] = set()
        while True:
            page = await self._proposal_page(status, key, reverse=False, limit=page_limit)
            for proposal in page.upgrades:
                found[proposal.id] = proposal
            key = self._next(page, seen_keys)
            if key is None:
                return sorted(found.values(), key=lambda p: p.id)

    async def newest_upgrade_proposals(
        self, status: ProposalStatus | None = None, *, want: int = 1, page_limit: int = 50
    ) -> list[UpgradeProposal]:
        """Up to `want` upgrade proposals, newest first, stopping as soon as they are found.

        Uses `pagination.reverse=true`, so catching up on the newest passed upgrade costs one
        page on a chain with hundreds of proposals.
        """
        found: dict[int, UpgradeProposal] = {}
        key: str | None = None
        seen_keys: set[str] = set()
        while True:
            page = await self._proposal_page(status, key, reverse=True, limit=page_limit)
            for proposal in page.upgrades:
                found.setdefault(proposal.id, proposal)
            key = self._next(page, seen_keys)
            if len(found) >= want or key is None:
                newest = sorted(found.values(), key=lambda p: p.id, reverse=True)
                return newest[:want]

    # --- plumbing -------------------------------------------------------------------------

    async def _proposal_page(
        self, status: ProposalStatus | None, key: str | None, *, reverse: bool, limit: int
    ) -> chain_json.ProposalPage:
        # Numbers, not enum names: some chains reject the name with code 3. An explicit limit
        # keeps the SDK from forcing count_total on.
        params: dict[str, str] = {"pagination.limit": str(limit)}
        if status is not None and status != ProposalStatus.UNSPECIFIED:
            params["proposal_status"] = str(int(status))
        if key is not None:
            params["pagination.key"] = key  # httpx percent-encodes its + / =
        if reverse:
            params["pagination.reverse"] = "true"
        if self.gov_v1 is not False:
            try:
                answer = await self._get(GOV_V1_PROPOSALS, params)
            except ChainNotImplemented:
                self.gov_v1 = False  # SDK <= v0.45: remember, ask v1beta1 from now on
            else:
                self.gov_v1 = True
                return self._decode(GOV_V1_PROPOSALS, chain_json.proposals_v1, answer.body)
        answer = await self._get(GOV_V1BETA1_PROPOSALS, params)
        return self._decode(GOV_V1BETA1_PROPOSALS, chain_json.proposals_v1beta1, answer.body)

    def _next(self, page: chain_json.ProposalPage, seen: set[str]) -> str | None:
        """The key of the next page; an empty page with a key is NOT the end (v0.50 bug)."""
        endpoint = GOV_V1_PROPOSALS if self.gov_v1 else GOV_V1BETA1_PROPOSALS
        if page.next_key is None:
            return None
        if page.next_key in seen:
            raise ChainMalformed(endpoint, f"pagination loops: next_key {page.next_key!r} again")
        if len(seen) >= MAX_PAGES:
            raise ChainMalformed(endpoint, f"more than {MAX_PAGES} pages of proposals")
        seen.add(page.next_key)
        return page.next_key

    async def _get(self, path: str, params: dict[str, str] | None = None) -> _Answer:
        """GET `path`; the whole exchange, body included, is bounded by the timeout."""
        phase = "connect"
        try:
            with trio.fail_after(self._timeout):
                request = self._client.build_request(
                    "GET",
                    self._base + path,
                    params=params,
                    headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
                )
                response = await self._client.send(request, stream=True)
                try:
                    phase = "body"
                    body = await _read_capped(response, path)
                finally:
                    await response.aclose()
        except trio.TooSlowError:
            raise ChainTimeout(path, f"no complete answer within {self._timeout:g}s") from None
        except httpx.TimeoutException as exc:
            raise ChainTimeout(path, self._describe(exc)) from None
        except httpx.RemoteProtocolError as exc:
            # Closed before or in the middle of the answer: a transport failure, as transient
            # as a reset (retry it), not a statement about the LCD's data.
            where = "mid-answer" if phase == "body" else "before answering"
            raise ChainUnreachable(path, f"closed {where}: {self._describe(exc)}") from None
        except httpx.DecodingError as exc:
            raise ChainMalformed(path, self._describe(exc)) from None
        except (httpx.HTTPError, OSError) as exc:  # connect/read/write errors, resets
            raise ChainUnreachable(path, self._describe(exc)) from None
        if response.status_code // 100 != 2:
            raise _http_error(path, response.status_code, body)
        app_height = None
        for name in HEIGHT_HEADERS:
            if (value := response.headers.get(name)) is not None:
                try:
                    app_height = parse_int64(value.strip(), minimum=0)
                except ValueError as exc:
                    raise ChainMalformed(path, f"header {name}: {exc}") from None
                break
        return _Answer(body=body, app_height=app_height)

    def _decode(self, endpoint: str, decode: Callable[[bytes], T], body: bytes) -> T:
        try:
            return decode(body)
        except MalformedJSON as exc:
            raise ChainMalformed(endpoint, exc.reason) from None

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"[:200]
        if self._password:  # never echo credentials embedded in the LCD URL
            text = text.replace(self._password, "***")
        return text


_USER_AGENT = f"gopher-updater/{__version__}"


async def _read_capped(response: httpx.Response, path: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY:
            raise ChainMalformed(path, f"answer larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _http_error(path: str, status: int, body: bytes) -> ChainHTTPError:
    lcd = chain_json.error_body(body)
    if lcd is not None and (lcd.message is not None or lcd.error is not None):
        code, message = lcd.code, (lcd.message or lcd.error or "")[:200]
    else:
        code, message = None, repr(body[:120])
    cls = ChainNotImplemented if status == 501 else ChainHTTPError
    return cls(path, status, code, message)


def _path_segment(name: str) -> str:
    """Percent-encode a plan name as one path segment (names hold spaces and slashes)."""
    segment = quote(name, safe="")
    # "." and ".." would be removed by URL normalisation; encode them so they reach the LCD.
    return segment.replace(".", "%2E") if segment.strip(".") == "" else segment

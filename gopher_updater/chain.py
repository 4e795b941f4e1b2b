"""Read-only client for the Cosmos SDK LCD (REST gateway): plan, heights, upgrade proposals.

Why it is shaped this way:
- Every request runs inside `trio.fail_after(timeout)` covering connect, headers AND body, so
  a node that trickles one byte a second cannot stall the watcher past its deadline (httpx's
  own timeouts are per socket operation and would let it).
- Every failure is a `ChainError` (see `chain_errors`) naming the route, the LCD as
  scheme://host:port and the reason; nothing else escapes, whatever the LCD sends: not a
  KeyError, an httpx exception, an `InvalidURL` built from a hostile plan name or
  `next_key`, nor a RecursionError from deeply nested JSON. The daemon treats any of them as
  "no observation", which the promotion rule never turns into a promotion.
- Bodies are read up to a per-route cap (1 MiB, 8 MiB for a governance page, room for a full
  block on `blocks/latest`), so a hostile or broken LCD cannot exhaust memory.
- `current_plan` also returns the app height from the response header, so the idle poll is
  one small request; `blocks/latest` (~4 KB) is only needed while a plan is near.
- There is no retry or Retry-After handling here (the caller's poll cadence is the retry),
  so nothing in this module waits; listings are bounded in pages and bytes (`chain_gov`).
JSON shapes and strict number parsing live in `chain_json`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

import attrs
import httpx
import trio

from gopher_updater import __version__, chain_gov, chain_json
from gopher_updater.chain_errors import (
    ChainHTTPError,
    ChainInvalidRequest,
    ChainMalformed,
    ChainNotImplemented,
    ChainTimeout,
    ChainUnreachable,
    origin_of,
    plan_name_segment,
)
from gopher_updater.chain_gov import UpgradeListing
from gopher_updater.chain_shapes import MalformedJSON, ProposalPage, parse_int64
from gopher_updater.model import Height, PlanAnswer, ProposalStatus, UpgradeProposal
from gopher_updater.safe_text import describe_cause

CURRENT_PLAN = "/cosmos/upgrade/v1beta1/current_plan"
APPLIED_PLAN = "/cosmos/upgrade/v1beta1/applied_plan/"
BLOCKS_LATEST = "/cosmos/base/tendermint/v1beta1/blocks/latest"
GOV_V1_PROPOSALS = "/cosmos/gov/v1/proposals"
GOV_V1BETA1_PROPOSALS = "/cosmos/gov/v1beta1/proposals"
#: v0.53 sends the plain header, v0.47–v0.50 only the grpc-gateway metadata one.
HEIGHT_HEADERS = ("X-Cosmos-Block-Height", "Grpc-Metadata-X-Cosmos-Block-Height")

MIB = 1024 * 1024
#: Largest body read per route. A Cosmos Hub page of 100 v1 proposals is ~180 KB, a plan
#: answer well under 1 KB. `blocks/latest` is a whole block: CometBFT's default
#: max_bytes is 21 MiB and JSON + base64 inflate it by ~1.4, and refusing the halt block
#: would cost the promotion, so it gets the room a full block needs.
MAX_BODY = 1 * MIB
MAX_GOV_BODY = 8 * MIB
MAX_BLOCK_BODY = 32 * MIB
T = TypeVar("T")


@attrs.frozen
class _Answer:
    body: bytes
    app_height: int | None


class ChainClient:
    """One LCD. Use as `async with ChainClient(url, timeout=5.0) as chain: ...`.

    `auth` (e.g. `httpx.BasicAuth`) is sent with every request. Userinfo in `base_url`
    (`http://user:pass@lcd`) is taken out of the URL and used as Basic auth when `auth` is
    not given, so it never appears in a request line, an error or a log.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        client: httpx.AsyncClient | None = None,
        auth: httpx.Auth | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        url = httpx.URL(base_url)
        self._secret = url.password or ""  # to mask, should a library ever echo it
        if auth is None and (url.username or url.password):
            auth = httpx.BasicAuth(url.username, url.password or "")
        url = url.copy_with(username=None, password=None)
        self._base = str(url).rstrip("/")
        self._auth = auth
        #: The LCD as errors and logs may name it: `scheme://host:port`, no credentials.
        self.origin = origin_of(url)
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
        answer = await self._get(BLOCKS_LATEST, limit=MAX_BLOCK_BODY)
        header = self._decode(BLOCKS_LATEST, chain_json.latest_block, answer.body)
        return Height(
            block=header.height,
            app=answer.app_height,
            time=header.time or None,
            chain_id=header.chain_id or None,
        )

    async def applied_height(self, name: str) -> int:
        """The height at which plan `name` was applied, 0 if it never was (cancelled/replaced).

        Raises `ChainInvalidRequest` for a name no URL can carry (see `chain_errors`).
        """
        try:
            path = APPLIED_PLAN + plan_name_segment(name)
        except ValueError as exc:
            endpoint = APPLIED_PLAN + "{name}"
            raise ChainInvalidRequest(endpoint, str(exc), origin=self.origin) from None
        answer = await self._get(path)
        return self._decode(path, chain_json.applied_height, answer.body)

    async def upgrade_proposals(
        self, status: ProposalStatus | None = None, *, page_limit: int = 100
    ) -> list[UpgradeProposal]:
        """Every upgrade proposal (optionally with `status`), oldest first, all pages."""
        fetch = functools.partial(self._proposal_page, status, reverse=False, limit=page_limit)
        return await self._walk(chain_gov.walk_all(fetch))

    async def newest_upgrade_proposals(
        self, status: ProposalStatus | None = None, *, want: int = 1, page_limit: int = 50
    ) -> list[UpgradeProposal]:
        """Up to `want` upgrade proposals, newest first: `newest_upgrades(...).upgrades`."""
        listing = await self.newest_upgrades(status, want=want, page_limit=page_limit)
        return list(listing.upgrades)

    async def newest_upgrades(
        self,
        status: ProposalStatus | None = None,
        *,
        want: int = 1,
        page_limit: int = 50,
        since: UpgradeListing | None = None,
        reopen: frozenset[int] = frozenset(),
    ) -> UpgradeListing:
        """Up to `want` upgrade proposals, newest first, stopping as soon as they are found.

        Uses `pagination.reverse=true`, so catching up on the newest passed upgrade costs one
        page on a chain with hundreds of proposals. With `since` (the previous listing of
        the same final `status`), the walk also stops at the first page reaching
        `since.newest_id` and merges `since.upgrades`: proposals at or below it were read
        then, and a final status never changes. `reopen` names proposals the caller saw
        still open (in voting) back then: they may have passed since, so the walk goes down
        to the lowest of them. A `since` that cannot apply (another status, a smaller
        `want`, a non-final status, a chain whose newest id went down) means a full walk.
        """
        fetch = functools.partial(self._proposal_page, status, reverse=True, limit=page_limit)
        walk = chain_gov.walk_newest(fetch, status, want=want, since=since, reopen=reopen)
        return await self._walk(walk)

    # --- plumbing -------------------------------------------------------------------------

    async def _walk(self, walk: Awaitable[T]) -> T:
        try:
            return await walk
        except MalformedJSON as exc:  # the walk's own bounds (loops, pages, bytes)
            endpoint = GOV_V1_PROPOSALS if self.gov_v1 else GOV_V1BETA1_PROPOSALS
            raise self._malformed(endpoint, exc.reason) from None

    async def _proposal_page(
        self, status: ProposalStatus | None, key: str | None, *, reverse: bool, limit: int
    ) -> tuple[ProposalPage, int]:
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
                answer = await self._get(GOV_V1_PROPOSALS, params, limit=MAX_GOV_BODY)
            except ChainNotImplemented:
                self.gov_v1 = False  # SDK <= v0.45: remember, ask v1beta1 from now on
            else:
                self.gov_v1 = True
                page = self._decode(GOV_V1_PROPOSALS, chain_json.proposals_v1, answer.body)
                return page, len(answer.body)
        answer = await self._get(GOV_V1BETA1_PROPOSALS, params, limit=MAX_GOV_BODY)
        page = self._decode(GOV_V1BETA1_PROPOSALS, chain_json.proposals_v1beta1, answer.body)
        return page, len(answer.body)

    async def _get(
        self, path: str, params: dict[str, str] | None = None, *, limit: int = MAX_BODY
    ) -> _Answer:
        """GET `path`; the whole exchange, body included, is bounded by the timeout."""
        origin = self.origin
        try:
            request = self._client.build_request(
                "GET",
                self._base + path,
                params=params,
                headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
            )
        except Exception as exc:  # InvalidURL (too long, bad characters), UnicodeError, ...
            raise ChainInvalidRequest(path, self._describe(exc), origin=origin) from None
        phase = "connect"
        try:
            with trio.fail_after(self._timeout):
                response = await self._client.send(request, auth=self._auth, stream=True)
                try:
                    phase = "body"
                    body = await _read_capped(response, limit)
                finally:
                    await response.aclose()
        except _TooBig as exc:
            raise self._malformed(path, str(exc)) from None
        except trio.TooSlowError:
            reason = f"no complete answer within {self._timeout:g}s"
            raise ChainTimeout(path, reason, origin=origin) from None
        except httpx.TimeoutException as exc:
            raise ChainTimeout(path, self._describe(exc), origin=origin) from None
        except httpx.RemoteProtocolError as exc:
            # Closed before or in the middle of the answer: a transport failure, as transient
            # as a reset (retry it), not a statement about the LCD's data.
            where = "mid-answer" if phase == "body" else "before answering"
            reason = f"closed {where}: {self._describe(exc)}"
            raise ChainUnreachable(path, reason, origin=origin) from None
        except httpx.DecodingError as exc:
            raise self._malformed(path, self._describe(exc)) from None
        except Exception as exc:  # connect/read/write errors, resets, TLS, anything else odd
            # The useful words (a TLS verify failure, "Connection refused") sit several
            # wrapped exceptions down: name the root cause, as the registry client does.
            failed = "failed mid-answer" if phase == "body" else "connection failed"
            reason = f"{failed}: {self._mask(describe_cause(exc))[:200]}"
            raise ChainUnreachable(path, reason, origin=origin) from None
        if response.status_code // 100 != 2:
            raise _http_error(path, response.status_code, body, origin)
        app_height = None
        for name in HEIGHT_HEADERS:
            if (value := response.headers.get(name)) is not None:
                try:
                    app_height = parse_int64(value.strip(), minimum=0)
                except ValueError as exc:
                    raise self._malformed(path, f"header {name}: {exc}") from None
                break
        return _Answer(body=body, app_height=app_height)

    def _decode(self, endpoint: str, decode: Callable[[bytes], T], body: bytes) -> T:
        try:
            return decode(body)
        except MalformedJSON as exc:
            raise self._malformed(endpoint, exc.reason) from None
        except Exception as exc:  # a decoder bug must still be "no observation", not a crash
            raise self._malformed(endpoint, f"undecodable: {self._describe(exc)}") from None

    def _malformed(self, endpoint: str, reason: str) -> ChainMalformed:
        return ChainMalformed(endpoint, reason, origin=self.origin)

    def _describe(self, exc: BaseException) -> str:
        try:
            text = f"{type(exc).__name__}: {exc}"[:200]
        except Exception:  # an exception whose str() fails
            text = type(exc).__name__
        return self._mask(text)

    def _mask(self, text: str) -> str:
        if self._secret:  # never echo credentials embedded in the LCD URL
            text = text.replace(self._secret, "***")
        return text


_USER_AGENT = f"gopher-updater/{__version__}"


class _TooBig(Exception):
    pass


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooBig(f"answer of {declared} bytes is larger than {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _TooBig(f"answer larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _http_error(path: str, status: int, body: bytes, origin: str) -> ChainHTTPError:
    lcd = chain_json.error_body(body)
    if lcd is not None and (lcd.message is not None or lcd.error is not None):
        code, message = lcd.code, (lcd.message or lcd.error or "")[:200]
    else:
        code, message = None, repr(body[:120])
    cls = ChainNotImplemented if status == 501 else ChainHTTPError
    return cls(path, status, code, message, origin=origin)

"""Governance listings as the gateway and the SDK serve them: query parsing and pagination.

Copied rule by rule from the SDK (`/work/shared/reference/cosmos-lcd.md` §2.4):
grpc-gateway query-parameter parsing with its Go `strconv` error messages, and
`query.FilteredPaginate` (v0.45-v0.47, correct) beside `query.CollectionFilteredPaginate`
(v0.50: counts scanned items on keyed pages and skips raw items for an offset).
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from collections.abc import Callable, Iterable, Sequence

import attrs

from gopher_updater.model import ProposalStatus
from gopher_updater.testing.chainsim_lcd import DEFAULT_LIMIT, JsonDict, LcdError, encode_json

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

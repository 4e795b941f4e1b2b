"""Walking paginated governance listings: bounded, loop-proof, and able to stop early.

Why apart from `chain.py`: the walk is pure logic over "fetch the page after this key",
which makes its bounds easy to read and to test, while `chain.py` keeps the I/O.

- A listing follows `next_key` to the end and never trusts `pagination.total`; an empty page
  with a `next_key` is not the end (SDK v0.50 filtered-pagination bug).
- No answer can make a walk loop: a `next_key` seen before, more than MAX_PAGES pages or
  MAX_LISTING_BYTES read end it with `MalformedJSON`, which the client reports as
  `ChainMalformed` (there is no retry in the chain client, so nothing here waits or spins).
- A newest-first walk can resume from the previous one (`UpgradeListing`): proposals at or
  below the id it reached were read then, and a final status (passed, rejected, failed)
  never changes, so on a chain whose upgrades are old the next listing costs one page
  instead of the whole history (measured: 101 requests, 2.76 MB on 2,000 proposals).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs

from gopher_updater.chain_shapes import MalformedJSON, ProposalPage
from gopher_updater.model import ProposalStatus, UpgradeProposal

MAX_PAGES = 1000
MAX_LISTING_BYTES = 64 * 1024 * 1024
#: Statuses a proposal never leaves: only listings of these can resume from an earlier one.
FINAL_STATUSES = frozenset({ProposalStatus.PASSED, ProposalStatus.REJECTED, ProposalStatus.FAILED})

#: Fetch the page after `key` (None = the first page); returns the page and its body size.
FetchPage = Callable[[str | None], Awaitable[tuple[ProposalPage, int]]]


@attrs.frozen
class UpgradeListing:
    """One newest-first walk of upgrade proposals, kept so the next walk can stop early.

    `newest_id` is the highest proposal id (of any kind, upgrade or not) the walk saw with
    `status`: a walk given this listing as `since` stops once it reaches that id.
    """

    upgrades: tuple[UpgradeProposal, ...]  # newest first, at most `want`
    status: ProposalStatus | None
    want: int
    newest_id: int  # 0 when the walk saw no proposal at all
    pages: int  # requests this walk spent (diagnostics)


@attrs.define
class _Walk:
    seen_keys: set[str] = attrs.Factory(set)
    pages: int = 0
    size: int = 0

    async def page(self, fetch: FetchPage, key: str | None) -> ProposalPage:
        page, size = await fetch(key)
        self.pages += 1
        self.size += size
        return page

    def next_key(self, page: ProposalPage) -> str | None:
        if page.next_key is None:
            return None
        if page.next_key in self.seen_keys:
            raise MalformedJSON(f"pagination loops: next_key {page.next_key!r} again")
        if self.pages >= MAX_PAGES:
            raise MalformedJSON(f"more than {MAX_PAGES} pages of proposals")
        if self.size >= MAX_LISTING_BYTES:
            raise MalformedJSON(f"listing larger than {MAX_LISTING_BYTES} bytes")
        self.seen_keys.add(page.next_key)
        return page.next_key


async def walk_all(fetch: FetchPage) -> list[UpgradeProposal]:
    """Every upgrade on every page, oldest first (`fetch` asks in ascending order)."""
    found: dict[int, UpgradeProposal] = {}
    walk = _Walk()
    key: str | None = None
    while True:
        page = await walk.page(fetch, key)
        for proposal in page.upgrades:
            found[proposal.id] = proposal
        key = walk.next_key(page)
        if key is None:
            return sorted(found.values(), key=lambda p: p.id)


async def walk_newest(
    fetch: FetchPage,
    status: ProposalStatus | None,
    *,
    want: int,
    since: UpgradeListing | None = None,
    reopen: frozenset[int] = frozenset(),
) -> UpgradeListing:
    """Up to `want` upgrades, newest first (`fetch` asks with `pagination.reverse=true`).

    See `ChainClient.newest_upgrades` for `since` and `reopen`.
    """
    stop_at = _stop_at(status, want, since, reopen)
    found: dict[int, UpgradeProposal] = {}
    newest = 0
    walk = _Walk()
    key: str | None = None
    while True:
        page = await walk.page(fetch, key)
        if page.ids:
            if walk.pages == 1 and since is not None and max(page.ids) < since.newest_id:
                stop_at = None  # ids went down: another chain, or a reset; trust nothing
            newest = max(newest, *page.ids)
        for proposal in page.upgrades:
            found.setdefault(proposal.id, proposal)
        key = walk.next_key(page)
        reached = stop_at is not None and bool(page.ids) and min(page.ids) <= stop_at
        if len(found) >= want or key is None or reached:
            break
    if stop_at is not None and since is not None:
        for proposal in since.upgrades:
            found.setdefault(proposal.id, proposal)
        newest = max(newest, since.newest_id)
    upgrades = sorted(found.values(), key=lambda p: p.id, reverse=True)[:want]
    return UpgradeListing(tuple(upgrades), status, want, newest, walk.pages)


def _stop_at(
    status: ProposalStatus | None,
    want: int,
    since: UpgradeListing | None,
    reopen: frozenset[int],
) -> int | None:
    """The proposal id a newest-first walk may stop at, or None for a full walk."""
    if since is None or since.status != status or since.want < want:
        return None
    if status not in FINAL_STATUSES:
        return None
    return min([since.newest_id, *(i - 1 for i in reopen)])

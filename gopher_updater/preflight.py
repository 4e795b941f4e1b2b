"""The registry watch: push credentials and source-tag preflight, ahead of the halt.

It checks credentials (a push-scope token) at start-up and periodically, and HEADs the source
tags of the current and upcoming plans well before their heights, so that a missing image is
noticed hours before the halt rather than at it. It never writes to the registry.

It is the only writer of the registry record, published as a frozen `RegistryView` (read by
`/readyz` for the registry check and by `/status` for the preflight table). Which tags to
check comes from the other tasks' published views (`wanted_tags`), read, never written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, Protocol

import attrs
import trio

from gopher_updater.announce import Announcer
from gopher_updater.logs import get_logger
from gopher_updater.metrics import Metrics
from gopher_updater.model import Digest, Plan
from gopher_updater.registry_errors import RegistryError
from gopher_updater.rule_records import Tags, TagScheme
from gopher_updater.views import ChainView, GovernanceView, Preflight, RegistryView, Wakeup

log = get_logger("gopher_updater.preflight")

CREDENTIALS_RETRY = 15.0  # seconds until a failed credential check is repeated
PREFLIGHT_UPCOMING = 5  # at most this many upcoming upgrades are preflighted
#: Seconds until a tag that was present and now reads missing is read again. Distribution's
#: filesystem storage rewrites a tag's link in place, so a HEAD racing CI's re-push of the
#: same tag can answer 404 (measured: 2 of 3,000 HEADs during a push loop). One miss is not
#: worth a `source_missing` page; two reads apart are.
CONFIRM_MISSING = 0.5

Upgrade = Literal["scheduled", "upcoming"]


class RegistryProbe(Protocol):
    async def check_push_access(self) -> None: ...

    async def digest(self, tag: str) -> Digest | None: ...


@attrs.frozen
class Wanted:
    """A source tag to preflight, and why: the scheduled plan's, or an upcoming upgrade's.

    The difference matters to whoever is alerted: a missing image for the scheduled plan is
    an upgrade that will stall; one for a proposal still being voted on may never be needed.
    """

    tag: str
    upgrade: Upgrade


def wanted_tags(chain: ChainView, governance: GovernanceView, tags: TagScheme) -> list[Wanted]:
    """Source tags to preflight: the current plan's and the next upcoming upgrades'.

    Plans already promoted are left out; names that cannot become tags are the poller's to
    report, not ours to HEAD.
    """
    watch = chain.watch
    height = watch.height
    upcoming = [u for u in governance.upcoming if height is None or u.plan.height > height]
    plans: list[tuple[Plan, Upgrade]] = [(watch.plan, "scheduled")] if watch.plan else []
    plans += [(u.plan, "upcoming") for u in upcoming[:PREFLIGHT_UPCOMING]]
    found: list[Wanted] = []
    for plan, upgrade in plans:
        named = tags.for_plan(plan)
        if not isinstance(named, Tags) or plan.name in watch.promoted:
            continue
        if named.source not in {w.tag for w in found}:
            found.append(Wanted(named.source, upgrade))
    return found


@attrs.define
class RegistryWatch:
    """Credentials and preflight every `interval`, or sooner when `wakeup` is poked."""

    registry: RegistryProbe
    metrics: Metrics
    source_tags: Callable[[], list[Wanted]]
    interval: float
    wakeup: Wakeup = attrs.Factory(Wakeup)
    announce: Announcer = attrs.Factory(Announcer)  # notifications: never blocks
    _view: RegistryView = attrs.field(init=False, factory=RegistryView)
    _series: dict[str, str] = attrs.field(init=False, factory=dict)  # tag -> its `upgrade` label

    @property
    def view(self) -> RegistryView:
        return self._view

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Check now, then every `interval` or when poked.

        After a failed credential check the next one comes sooner: a registry that was briefly
        unreachable at start-up should not keep the pod unready for a whole interval.
        """
        task_status.started()
        while True:
            await self.check_credentials()
            await self.preflight(self.source_tags())
            ok = self._view.ok
            await self.wakeup.sleep(self.interval if ok else min(self.interval, CREDENTIALS_RETRY))

    async def check_credentials(self) -> None:
        view = self._view
        error: str | None
        try:
            await self.registry.check_push_access()
        except RegistryError as exc:
            if view.ok is not False or view.error != str(exc):
                log.error("registry credentials check failed", error=str(exc))
            ok, error = False, str(exc)
        else:
            if view.ok is not True:
                log.info("registry credentials ok (push access)")
            ok, error = True, None
        self._view = attrs.evolve(view, ok=ok, error=error, checked_unix=time.time())

    async def preflight(self, wanted: list[Wanted]) -> None:
        """HEAD each source tag; record and log changes (present <-> missing)."""
        for want in wanted:
            tag, upgrade = want.tag, want.upgrade
            entry = self._view.preflight.get(tag, Preflight(source_tag=tag))
            entry = attrs.evolve(entry, upgrade=upgrade)
            try:
                digest = await self.registry.digest(tag)
                if digest is None and entry.present:
                    await trio.sleep(CONFIRM_MISSING)
                    digest = await self.registry.digest(tag)
            except RegistryError as exc:
                self._record(attrs.evolve(entry, error=str(exc)))
                continue
            present = digest is not None
            if entry.present is not present:
                (log.info if present else log.warning)(
                    "preflight: source image " + ("present" if present else "missing"),
                    source_tag=tag,
                    digest=str(digest) if digest else None,
                )
                self.announce.preflight(tag, present, str(digest) if digest else None)
            self._record(
                Preflight(
                    source_tag=tag,
                    present=present,
                    digest=str(digest) if digest else None,
                    checked_at=time.time(),
                    upgrade=upgrade,
                )
            )
            self._gauge(tag, upgrade, present)
        stale = set(self._view.preflight) - {w.tag for w in wanted}
        if stale:
            kept = {t: p for t, p in self._view.preflight.items() if t not in stale}
            self._view = attrs.evolve(self._view, preflight=kept)
            for tag in stale:
                self._gauge(tag, None, None)

    def _gauge(self, tag: str, upgrade: str | None, present: bool | None) -> None:
        """One series per tag: a proposal that passes moves its tag from upcoming to scheduled."""
        was = self._series.pop(tag, None)
        if was is not None and was != upgrade:
            self.metrics.source_tag_present.remove(tag, was)
        if upgrade is not None and present is not None:
            self.metrics.source_tag_present.labels(tag=tag, upgrade=upgrade).set(int(present))
            self._series[tag] = upgrade

    def _record(self, entry: Preflight) -> None:
        self._view = attrs.evolve(
            self._view, preflight={**self._view.preflight, entry.source_tag: entry}
        )

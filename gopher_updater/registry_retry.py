"""How long the registry client waits between attempts: the whole retry budget, explicit.

Two kinds of wait, counted apart (this is what made a promotion behind 2×429 + 2×503 take
8.6 s: stamina derives its exponential backoff from the attempt number, which counted the
Retry-After attempts too, so the first 503 waited as if it were the third failure):

- The registry said `Retry-After` (or Docker Hub's exhausted `ratelimit-remaining` window):
  wait exactly that, but never less than `floor` (plus jitter: `Retry-After: 0` forever must
  not become hundreds of requests a second) and never more than `ceiling` or the call's
  deadline: beyond those, give up this call at once with the registry's typed error and let
  the worker's own, slower backoff decide when to come back.
- A 5xx/408/timeout/connection error without Retry-After: a short exponential backoff with
  jitter, counted over these failures only, because a promotion at the halt is the one moment
  that matters and the registry is usually back within a second.

Every public call is also bounded as a whole by the client's deadline.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import attrs
import trio

from gopher_updater.logs import get_logger
from gopher_updater.registry_errors import RegistryError, RegistryUnavailable

log = get_logger("gopher_updater.registry")

#: The least time between two requests a `Retry-After` can make us wait (jitter on top).
RETRY_AFTER_FLOOR = 0.5
RETRY_AFTER_FLOOR_JITTER = 0.25
#: A `Retry-After` above this ends the call; the worker retries later with its own backoff.
RETRY_AFTER_CEILING = 60.0
#: Backoff after a failure without Retry-After: 0.1-0.2 s, 0.2-0.3 s, 0.4-0.5 s, ... 5 s.
BACKOFF_INITIAL = 0.1
BACKOFF_JITTER = 0.1
BACKOFF_MAX = 5.0


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """The retry budget of one client (defaults: the constants above)."""

    wait_initial: float = attrs.field(default=BACKOFF_INITIAL, validator=_positive)
    wait_max: float = attrs.field(default=BACKOFF_MAX, validator=_positive)
    wait_jitter: float = BACKOFF_JITTER
    floor: float = attrs.field(default=RETRY_AFTER_FLOOR, validator=_positive)
    floor_jitter: float = RETRY_AFTER_FLOOR_JITTER
    ceiling: float = RETRY_AFTER_CEILING


@attrs.define
class CallScope:
    """Per public call (`retag`, `digest`, ...): what it is, and its last transient error.

    Lives in the call's frame, never on the shared client: concurrent calls (the worker's
    retag and the watcher's preflight) must not read each other's errors.
    """

    operation: str
    tag: str | None
    last_transient: RegistryError | None = None


@contextlib.contextmanager
def bounded_call(deadline: float, operation: str, tag: str | None) -> Iterator[CallScope]:
    """One public call's scope, bounded as a whole by `deadline`: past it, the call ends with
    RegistryUnavailable carrying the last transient error it met (what an operator needs)."""
    call = CallScope(operation, tag)
    try:
        with trio.fail_after(deadline):
            yield call
    except trio.TooSlowError:
        last = call.last_transient
        raise RegistryUnavailable(
            f"gave up at the {deadline:g}s deadline"
            + (f"; last error: {last.message}" if last is not None and last.message else ""),
            operation=operation, tag=tag, status=last.status if last else None,
            code=last.code if last else None, retry_after=last.retry_after if last else None,
        ) from None  # fmt: skip


@attrs.define
class Backoff:
    """stamina's `on` hook for one request: decides whether to retry and exactly how long to
    wait. Always returns a number (never True), so stamina's attempt-number backoff is unused.
    """

    policy: RetryPolicy
    scope: CallScope
    failures: int = 0  # failures without Retry-After only

    def __call__(self, exc: Exception) -> bool | float:
        if not isinstance(exc, RegistryError) or not exc.retryable:
            return False
        self.scope.last_transient = exc
        if exc.retry_after is None:
            exponent = min(self.failures, 32)
            self.failures += 1
            wait = min(self.policy.wait_max, self.policy.wait_initial * 2.0**exponent)
            jitter: float = random.uniform(0, self.policy.wait_jitter)
            return wait + jitter
        if exc.retry_after < self.policy.floor:
            return self.policy.floor + random.uniform(0, self.policy.floor_jitter)
        remaining = trio.current_effective_deadline() - trio.current_time()
        if exc.retry_after > min(self.policy.ceiling, remaining):
            log.warning(
                "registry asks to wait too long: giving up this attempt",
                operation=self.scope.operation,
                retry_after=exc.retry_after,
                ceiling=self.policy.ceiling,
                remaining=round(remaining, 3),
            )
            return False
        return exc.retry_after

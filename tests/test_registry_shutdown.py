"""A PUT already on the wire finishes even when the daemon is shutting down.

Abandoning it halfway would leave the operator unsure what the target tag holds; the PUT is
shielded and bounded by its own timeout instead. The delay is injected with a transport
wrapper around the real one, in front of the real registry.
"""

from __future__ import annotations

import httpx
import trio

from gopher_updater.manifest import Outcome, RetagOutcome
from gopher_updater.registry import RegistryClient
from gopher_updater.testing.registry import RunningRegistry


class SlowPuts(httpx.AsyncBaseTransport):
    """The real transport, with every PUT held back `delay` seconds before it is sent."""

    def __init__(self, delay: float) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.delay = delay
        self.put_started = trio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.put_started.set()
            await trio.sleep(self.delay)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class SlowVerify(httpx.AsyncBaseTransport):
    """The real transport, with every HEAD after a PUT held back 0.3 s before it is sent."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.put_done = False
        self.verify_started = trio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD" and self.put_done:
            self.verify_started.set()
            await trio.sleep(0.3)
        response = await self.inner.handle_async_request(request)
        self.put_done = self.put_done or request.method == "PUT"
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def client_for(
    reg: RunningRegistry, repo: str, transport: httpx.AsyncBaseTransport
) -> RegistryClient:
    return RegistryClient(
        base_url=reg.url,
        repository=repo,
        user=reg.user,
        password=reg.password,
        timeout=5,
        transport=transport,
    )


async def retag_cancelled_at(client: RegistryClient, moment: trio.Event) -> list[RetagOutcome]:
    """Retag release-v1 -> mainnet-v1 and cancel it (a shutdown) once `moment` is set;
    what the retag returned despite the cancellation, if anything."""
    outcomes: list[RetagOutcome] = []

    async def retag() -> None:
        outcomes.append(await client.retag("release-v1", "mainnet-v1"))

    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(retag)
        await moment.wait()
        nursery.cancel_scope.cancel()
    return outcomes


async def test_put_in_flight_survives_cancellation(
    registry_token: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_token
    source = reg.push_image(unique_repo, "release-v1", "oci-index")
    transport = SlowPuts(delay=0.5)
    client = client_for(reg, unique_repo, transport)
    # Shutdown arrives while the PUT is in flight.
    outcomes = await retag_cancelled_at(client, transport.put_started)
    assert reg.head_digest(unique_repo, "mainnet-v1") == source
    # The verifying HEAD is shielded too: the caller learns (and logs) what was written.
    assert [(o.outcome, str(o.source_digest)) for o in outcomes] == [(Outcome.PROMOTED, source)]


async def test_shutdown_during_a_slow_verifying_head_still_reports_the_promotion(
    registry_token: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_token
    source = reg.push_image(unique_repo, "release-v1")
    transport = SlowVerify()
    client = client_for(reg, unique_repo, transport)
    # Shutdown arrives when the tag is visible and its verifying HEAD has not returned.
    outcomes = await retag_cancelled_at(client, transport.verify_started)
    assert [o.outcome for o in outcomes] == [Outcome.PROMOTED]
    assert reg.head_digest(unique_repo, "mainnet-v1") == source


async def test_cancellation_before_the_put_writes_nothing(
    registry_token: RunningRegistry, unique_repo: str
) -> None:
    reg = registry_token
    reg.push_image(unique_repo, "release-v1")
    transport = SlowPuts(delay=0.5)
    client = client_for(reg, unique_repo, transport)
    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(client.retag, "release-v1", "mainnet-v1")
        await trio.lowlevel.checkpoint()  # cancelled before any request completes
        nursery.cancel_scope.cancel()
    assert not transport.put_started.is_set()
    assert reg.head_digest(unique_repo, "mainnet-v1") is None

"""The Receiver simulator against the reference, over real HTTP, and the Nudger against it.

The simulator's own tests use the reference's worked examples (path and HMAC) byte for byte
and check each of the controller's answers; the integration tests run the real Nudger (real
httpx, real sockets, real clock, a shortened schedule) against it.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Iterator

import httpx
import pytest
import trio
from prometheus_client import CollectorRegistry

from gopher_updater.flux import Nudger
from gopher_updater.flux_receiver import parse_receivers
from gopher_updater.flux_status import FluxMetrics, NudgeRequest, NudgeSchedule
from gopher_updater.testing.fluxsim import (
    GENERIC,
    MAX_BODY,
    FluxSim,
    ObjectKey,
    Resource,
    SimReceiver,
    webhook_path,
)

TOKEN = b"s3cr3t-token"
NS = "flux-system"
IMAGE_REPO = ObjectKey("image.toolkit.fluxcd.io/v1", "ImageRepository", NS, "node")
GIT_REPO = ObjectKey("source.toolkit.fluxcd.io/v1", "GitRepository", NS, "flux-system")
RESOURCES = (
    Resource("ImageRepository", "node"),  # apiVersion defaulted, as the controller does
    Resource("GitRepository", "flux-system", api_version="source.toolkit.fluxcd.io/v1"),
)
WORKED_BODY = (
    b'{"chain_id":"mychain-1","upgrade":"v1.2.3","height":"123456",'
    b'"image":"ghcr.io/acme/node:mainnet-v1.2.3"}'
)
SHA1 = "sha1=575b5b226fa072838e6bcda8c1a6ad823d4eeb6d"
SHA512 = (
    "sha512=e24977a09acec45513a43b0bbbc07b006d5ef6ffb19b38106fc57b936ce75762"
    "089a1f36a93ce930c3fab9ca6964e098852d8e830f6dae6f69921ef4120fd33a"
)


def sign(body: bytes, key: bytes = TOKEN) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


@pytest.fixture
def sim() -> Iterator[FluxSim]:
    receivers = [
        SimReceiver("gopher-updater", NS, TOKEN, resources=RESOURCES),
        SimReceiver("open", NS, b"other-token", type=GENERIC, resources=RESOURCES[:1]),
    ]
    with FluxSim(receivers, objects=[IMAGE_REPO, GIT_REPO]) as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


# --- the path ------------------------------------------------------------------------------


def test_webhook_path_matches_the_references_worked_examples() -> None:
    assert webhook_path(TOKEN, "gopher-updater", NS) == (
        "/hook/a3ed2b2119b935be37ce1fcd2d8e0563c56625486496d7324f925e5fd109d13f"
    )
    assert webhook_path(TOKEN + b"\n", "gopher-updater", NS) == (
        "/hook/fe47c3045c1091f2c7325fb65c67b855f829c0a58378ec399da61527133ecfe2"
    )


def test_the_published_path_is_the_one_computed(sim: FluxSim) -> None:
    assert sim.webhook_path_of("gopher-updater") == webhook_path(TOKEN, "gopher-updater", NS)


@pytest.mark.parametrize("suffix", ["/", "?x=1", "%2F"])
def test_only_the_exact_raw_uri_matches(sim: FluxSim, http: httpx.Client, suffix: str) -> None:
    response = http.post(sim.url("gopher-updater") + suffix, content=b"{}")
    assert response.status_code == 404 and response.content == b""
    assert sim.calls()[-1].verdict == "not_found"


# --- generic-hmac --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [sign(WORKED_BODY), SHA1, SHA512, sign(WORKED_BODY).upper().replace("SHA256", "sha256")],
    ids=["sha256", "sha1", "sha512", "upper-hex"],
)
def test_a_correct_signature_is_accepted_and_annotates_every_resource(
    sim: FluxSim, http: httpx.Client, signature: str
) -> None:
    response = http.post(
        sim.url("gopher-updater"),
        content=WORKED_BODY,
        headers={"Content-Type": "application/json", "x-SIGNATURE": signature},
    )
    assert response.status_code == 200 and response.content == b""
    assert len(sim.annotations[IMAGE_REPO]) == 1 and len(sim.annotations[GIT_REPO]) == 1
    (call,) = sim.calls()
    assert (call.verdict, call.receiver, call.body) == (
        "accepted",
        f"{NS}/gopher-updater",
        WORKED_BODY,
    )
    assert call.header("x-signature") == signature


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        sign(WORKED_BODY, b"wrong-token"),
        sign(WORKED_BODY + b" "),
        "SHA256=" + sign(WORKED_BODY).partition("=")[2],
        "md5=" + "00" * 16,
        "sha256=not-hex",
        "sha256",
    ],
    ids=["missing", "empty", "wrong-key", "other-body", "upper-prefix", "md5", "bad-hex", "no-eq"],
)
def test_a_bad_signature_is_a_400(sim: FluxSim, http: httpx.Client, signature: str | None) -> None:
    headers = {} if signature is None else {"X-Signature": signature}
    response = http.post(sim.url("gopher-updater"), content=WORKED_BODY, headers=headers)
    assert response.status_code == 400
    assert sim.calls()[-1].verdict == "bad_signature"
    assert sim.annotations[IMAGE_REPO] == []


def test_generic_checks_nothing_and_takes_any_method(sim: FluxSim, http: httpx.Client) -> None:
    assert http.get(sim.url("open")).status_code == 200
    assert http.put(sim.url("open"), content=b"not json").status_code == 200
    assert len(sim.annotations[IMAGE_REPO]) == 2


def test_a_rotated_token_rekeys_the_path_only_at_reconcile(
    sim: FluxSim, http: httpx.Client
) -> None:
    old_url = sim.url("gopher-updater")
    sim.rotate_token("gopher-updater", NS, b"new-token")
    # The path is still the old one, but the HMAC key is read from the Secret: the new one.
    assert (
        http.post(old_url, content=b"{}", headers={"X-Signature": sign(b"{}")}).status_code == 400
    )
    good = {"X-Signature": sign(b"{}", b"new-token")}
    assert http.post(old_url, content=b"{}", headers=good).status_code == 200
    sim.reconcile()
    assert http.post(old_url, content=b"{}", headers=good).status_code == 404
    assert http.post(sim.url("gopher-updater"), content=b"{}", headers=good).status_code == 200


# --- the other answers ---------------------------------------------------------------------


def test_suspended_or_not_ready_is_a_503(sim: FluxSim, http: httpx.Client) -> None:
    sim.receivers[(NS, "open")].suspended = True
    assert http.post(sim.url("open")).status_code == 503
    sim.receivers[(NS, "open")].suspended = False
    sim.receivers[(NS, "open")].ready = False
    assert http.post(sim.url("open")).status_code == 503
    assert [c.verdict for c in sim.calls()] == ["not_ready", "not_ready"]


def test_a_missing_object_or_undefaultable_kind_is_a_500_after_the_others(
    http: httpx.Client,
) -> None:
    resources = (
        Resource("ImageRepository", "node"),
        Resource("ImageRepository", "gone"),
        Resource("Kustomization", "apps"),  # no default apiVersion for this kind
    )
    with FluxSim([SimReceiver("r", NS, TOKEN, GENERIC, resources)], [IMAGE_REPO]) as sim:
        assert http.post(sim.url("r")).status_code == 500
        assert len(sim.annotations[IMAGE_REPO]) == 1


def test_a_body_over_3_mib_is_a_413(sim: FluxSim, http: httpx.Client) -> None:
    big = b"x" * (MAX_BODY + 1)
    assert http.post(sim.url("open"), content=big).status_code == 413
    assert http.post(sim.url("open"), content=big[:-1]).status_code == 200


def test_forced_answers_and_dropped_connections(sim: FluxSim, http: httpx.Client) -> None:
    sim.drop()
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(sim.url("open"))
    sim.force(503, times=2)
    codes = [http.post(sim.url("open")).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert [c.verdict for c in sim.calls()] == ["dropped", "forced", "forced", "accepted"]


def test_a_stopped_simulator_refuses_connections(http: httpx.Client) -> None:
    sim = FluxSim([SimReceiver("open", NS, TOKEN, GENERIC)])
    url = sim.start() + webhook_path(TOKEN, "open", NS)
    sim.stop()
    with pytest.raises(httpx.ConnectError):
        http.post(url)


# --- the Nudger against it, over real HTTP --------------------------------------------------

FAST = NudgeSchedule(
    offsets=(0.0, 0.3, 0.6), retry_initial=0.05, retry_max=0.2, retry_budget=1.0, request_timeout=2
)
REQUEST = NudgeRequest(
    chain_id="mychain-1",
    plan="v1.2.3",
    height=123456,
    repository="me/node",
    target_tag="mainnet-v1.2.3",
    digest="sha256:" + "cd" * 32,
)


async def nudge(url: str, token: bytes | None) -> CollectorRegistry:
    """Run one series to its end (bounded: FAST ends within ~2 s even when failing)."""
    registry = CollectorRegistry()
    nudger = Nudger(parse_receivers(url, token), metrics=FluxMetrics(registry), schedule=FAST)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(nudger.run)
            assert nudger.submit_nowait(REQUEST)
            while not nudger.snapshot().finished:  # noqa: ASYNC110 (read as /status does)
                await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
    return registry


def count(registry: CollectorRegistry, outcome: str) -> float:
    value = registry.get_sample_value("gopher_updater_flux_nudges_total", {"outcome": outcome})
    assert value is not None
    return value


async def test_signed_nudges_are_accepted_on_schedule(sim: FluxSim) -> None:
    registry = await nudge(sim.url("gopher-updater"), TOKEN)
    calls = sim.calls()
    assert [c.verdict for c in calls] == ["accepted"] * len(FAST.offsets)
    gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
    assert gaps == pytest.approx([0.3, 0.3], abs=0.15)
    assert json.loads(calls[0].body)["target_tag"] == REQUEST.target_tag
    assert calls[0].header("content-type") == "application/json"
    assert len(sim.annotations[IMAGE_REPO]) == len(FAST.offsets)
    assert count(registry, "accepted") == len(FAST.offsets)


async def test_three_503s_are_retried_then_accepted(sim: FluxSim) -> None:
    sim.force(503, times=3)
    registry = await nudge(sim.url("gopher-updater"), TOKEN)
    verdicts = [c.verdict for c in sim.calls()]
    assert verdicts[:4] == ["forced", "forced", "forced", "accepted"]
    assert count(registry, "retry") == 3 and count(registry, "accepted") >= 2


async def test_a_wrong_token_is_rejected_once_and_never_retried(sim: FluxSim) -> None:
    registry = await nudge(sim.url("gopher-updater"), b"not-the-secrets-token")
    assert [(c.status, c.verdict) for c in sim.calls()] == [(400, "bad_signature")]
    assert count(registry, "rejected") == 1 and count(registry, "retry") == 0


async def test_a_wrong_path_is_retried_then_given_up(sim: FluxSim) -> None:
    wrong = sim.base_url + webhook_path(TOKEN + b"\n", "gopher-updater", NS)
    registry = await nudge(wrong, TOKEN)
    assert {c.verdict for c in sim.calls()} == {"not_found"}
    assert count(registry, "failed") >= 1 and count(registry, "accepted") == 0
    assert count(registry, "retry") >= 3


async def test_a_refused_connection_is_retried_and_fails_softly() -> None:
    sim = FluxSim([SimReceiver("open", NS, TOKEN, GENERIC)])
    url = sim.start() + webhook_path(TOKEN, "open", NS)
    sim.stop()
    registry = await nudge(url, None)
    assert count(registry, "failed") >= 1 and count(registry, "accepted") == 0

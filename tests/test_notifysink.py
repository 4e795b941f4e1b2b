"""The notification sink itself: it must record, verify and misbehave exactly as asked."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from gopher_updater.testing.notifysink import NotifySink, verify_signature

# The Flux reference's worked example (notification-controller generic-hmac), independent
# of our code: key `s3cr3t-token`, this exact 104-byte body, this signature.
FLUX_KEY = b"s3cr3t-token"
FLUX_BODY = (
    b'{"chain_id":"mychain-1","upgrade":"v1.2.3","height":"123456",'
    b'"image":"ghcr.io/acme/node:mainnet-v1.2.3"}'
)
FLUX_SIG = "sha256=4bcdf0e20c7ff8f4fdd00e69b13be1e0754fdbbedd90ac04a30f3f12645547d8"


@pytest.fixture
def sink() -> Iterator[NotifySink]:
    with NotifySink(key=FLUX_KEY, strict=True) as s:
        yield s


def test_signature_check_matches_the_flux_worked_example() -> None:
    assert len(FLUX_BODY) == 104
    assert verify_signature(FLUX_KEY, FLUX_BODY, FLUX_SIG)
    assert verify_signature(FLUX_KEY, FLUX_BODY, FLUX_SIG.upper().replace("SHA256", "sha256"))
    assert not verify_signature(FLUX_KEY, FLUX_BODY + b" ", FLUX_SIG)
    assert not verify_signature(FLUX_KEY, FLUX_BODY, FLUX_SIG.replace("sha256", "sha1"))
    assert not verify_signature(FLUX_KEY, FLUX_BODY, None)


def test_records_path_headers_body_and_verdict(sink: NotifySink) -> None:
    good = httpx.post(
        f"{sink.url}/hook/a?x=1", content=FLUX_BODY, headers={"X-Signature": FLUX_SIG}
    )
    bad = httpx.post(f"{sink.url}/hook/a", content=FLUX_BODY, headers={"X-Signature": "sha256=00"})
    assert (good.status_code, bad.status_code) == (200, 400)
    first, second = sink.posts
    assert first.path == "/hook/a?x=1" and first.body == FLUX_BODY
    assert first.header("x-signature") == FLUX_SIG and first.signature_ok
    assert second.signature_ok is False and second.status == 400
    assert first.json()["chain_id"] == "mychain-1"


def test_without_strict_a_bad_signature_is_recorded_not_refused() -> None:
    with NotifySink(key=FLUX_KEY) as lax:
        assert httpx.post(lax.url, content=b"{}").status_code == 200
        assert lax.posts[0].signature_ok is False


def test_fails_the_next_n_posts_then_recovers(sink: NotifySink) -> None:
    sink.fail_next(2, status=503)
    codes = [
        httpx.post(sink.url, content=FLUX_BODY, headers={"X-Signature": FLUX_SIG}).status_code
        for _ in range(3)
    ]
    assert codes == [503, 503, 200]
    assert [p.status for p in sink.posts] == codes


def test_hangs_then_answers_and_stop_releases_a_hang() -> None:
    s = NotifySink()
    s.hang_next(1, 0.4)
    started = time.monotonic()
    assert httpx.post(s.url, content=b"{}").status_code == 200
    assert time.monotonic() - started >= 0.4
    s.hang_all(30)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(s.url, content=b"{}", timeout=0.3)
    assert s.in_flight == 1
    started = time.monotonic()
    s.stop()
    assert time.monotonic() - started < 5
    assert s.wait_for(2, timeout=5) and s.in_flight == 0


def test_wait_for_filters_by_path_and_times_out(sink: NotifySink) -> None:
    httpx.post(f"{sink.url}/one", content=FLUX_BODY, headers={"X-Signature": FLUX_SIG})
    assert [p.path for p in sink.wait_for(1, path="/one")] == ["/one"]
    started = time.monotonic()
    assert sink.wait_for(1, timeout=0.2, path="/two") == []
    assert time.monotonic() - started >= 0.2

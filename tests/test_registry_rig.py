"""The registry rig is itself tested: the registry client's tests are only as good as it is.

Each claim the client tests lean on is checked here against the real registry: digests agree
with an independent client (skopeo), the registry really negotiates media types, each auth
mode refuses what it should, and the fault proxy forwards faithfully.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import pytest
import trio

from gopher_updater.testing.registry import (
    IMAGE_KINDS,
    KIND_MEDIA_TYPE,
    FaultProxy,
    FaultResponse,
    ImageKind,
    RunningRegistry,
    running_registry,
)
from gopher_updater.testing.registry_images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
)
from gopher_updater.testing.registry_token import Grant, TokenServer, parse_scopes

pytestmark = pytest.mark.registry

DOCKER_ONLY = f"{DOCKER_MANIFEST}, {DOCKER_LIST}"
#: One raw client for the module: creating one per request costs ~30 ms (CA bundle).
_HTTP = httpx.Client(trust_env=False, verify=False)


@pytest.fixture(scope="module", autouse=True)
def _close_client() -> Iterator[None]:
    yield
    _HTTP.close()


PUSH_PULL_ORDERS = ("pull,push", "push,pull")


def _b64url_json(part: str) -> dict[str, Any]:
    decoded = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    assert isinstance(decoded, dict)
    return decoded


def _jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    header, claims, sig = token.split(".")
    return _b64url_json(header), _b64url_json(claims), base64.urlsafe_b64decode(sig + "==")


def _token(
    ts: TokenServer, scope: str, auth: tuple[str, str] | None = None, **params: str
) -> httpx.Response:
    query = {"service": ts.service, "scope": scope, **params}
    return _HTTP.get(ts.url, params=query, auth=auth)


def _ts(reg: RunningRegistry) -> TokenServer:
    assert reg.token_server is not None
    return reg.token_server


# -- start-up and seeding ----------------------------------------------------------------------


def test_registry_answers_v2_with_the_mode_challenge(registry: RunningRegistry) -> None:
    resp = _HTTP.get(f"{registry.url}/v2/")
    if registry.auth == "none":
        assert resp.status_code == 200
    elif registry.auth == "basic":
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
    else:
        ts = _ts(registry)
        assert resp.status_code == 401
        challenge = resp.headers["WWW-Authenticate"]
        assert challenge.startswith(f'Bearer realm="{ts.url}",service="{ts.service}"')


def test_registry_never_uses_the_default_port(registry: RunningRegistry) -> None:
    assert registry.url.startswith("http://127.0.0.1:")
    assert registry.host != "127.0.0.1:5000"
    # The whole log: the registry is shared by the session, its start is far from the tail.
    assert f"listening on {registry.host}" in registry.log_path.read_text()


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_push_image_digest_agrees_with_head_and_skopeo(
    registry: RunningRegistry, kind: ImageKind, unique_repo: str
) -> None:
    digest = registry.push_image(unique_repo, "release-v2", kind)

    assert registry.head_digest(unique_repo, "release-v2") == digest
    assert registry.skopeo_digest(unique_repo, "release-v2") == digest
    body, media_type = registry.manifest(unique_repo, "release-v2")
    assert media_type == KIND_MEDIA_TYPE[kind]
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    assert json.loads(body)["mediaType"] == media_type


@pytest.mark.parametrize("kind", ["oci-index", "docker-list"])
def test_index_children_are_pushed_by_digest_for_two_platforms(
    registry_none: RunningRegistry, kind: ImageKind, unique_repo: str
) -> None:
    registry_none.push_image(unique_repo, "multi", kind)
    body, _ = registry_none.manifest(unique_repo, "multi")
    children = json.loads(body)["manifests"]

    assert [c["platform"]["architecture"] for c in children] == ["amd64", "arm64"]
    for child in children:
        assert registry_none.head_digest(unique_repo, child["digest"]) == child["digest"]
        assert registry_none.manifest(unique_repo, child["digest"])[1] == child["mediaType"]


def test_each_push_is_a_new_random_image(registry_none: RunningRegistry, unique_repo: str) -> None:
    first = registry_none.push_image(unique_repo, "a")
    second = registry_none.push_image(unique_repo, "b")
    assert first != second


def test_unknown_tag_is_none_for_both_checks(registry: RunningRegistry, unique_repo: str) -> None:
    registry.push_image(unique_repo, "exists")
    assert registry.head_digest(unique_repo, "missing") is None
    assert registry.skopeo_digest(unique_repo, "missing") is None


def test_head_digest_rides_out_a_tag_being_rewritten(
    registry_none: RunningRegistry, unique_repo: str
) -> None:
    """Tests poll a tag while the daemon writes it. The registry answers some HEADs that race
    a PUT of the same tag with 500 (it rewrites the link file in place); the rig's HEAD asks
    again rather than failing the test, and only ever reads the one digest written."""
    reg = registry_none
    digest = reg.push_image(unique_repo, "release-v1")
    body, media_type = reg.manifest(unique_repo, "release-v1")
    reg.put_manifest(unique_repo, "mainnet-v1", body, media_type)
    done = threading.Event()

    def rewrite() -> None:
        while not done.is_set():
            reg.put_manifest(unique_repo, "mainnet-v1", body, media_type)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        seen = {reg.head_digest(unique_repo, "mainnet-v1") for _ in range(300)}
    finally:
        done.set()
        writer.join()
    assert seen <= {digest, None}  # None: the in-place rewrite can also read as absent
    assert digest in seen


def test_delete_manifest_removes_the_tag(registry_none: RunningRegistry, unique_repo: str) -> None:
    digest = registry_none.push_image(unique_repo, "gone")
    registry_none.delete_manifest(unique_repo, digest)
    assert registry_none.head_digest(unique_repo, "gone") is None


def test_missing_binary_raises_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with (
        pytest.raises(RuntimeError, match="apt-get install docker-registry"),
        running_registry("none"),
    ):
        pass


def test_secrets_stay_out_of_repr(registry_basic: RunningRegistry) -> None:
    assert registry_basic.password not in repr(registry_basic)
    assert registry_basic.reader_password not in repr(registry_basic)


# -- content negotiation (what the client tests rely on) -----------------------------------


def test_oci_index_without_its_accept_type_is_404(
    registry_none: RunningRegistry, unique_repo: str
) -> None:
    registry_none.push_image(unique_repo, "idx", "oci-index")
    url = f"{registry_none.url}/v2/{unique_repo}/manifests/idx"

    assert _HTTP.head(url, headers={"Accept": DOCKER_ONLY}).status_code == 404
    oci = f"{OCI_MANIFEST}, {OCI_INDEX}"
    assert _HTTP.head(url, headers={"Accept": oci}).status_code == 200


def test_docker_list_without_its_accept_type_is_swapped_for_the_amd64_child(
    registry_none: RunningRegistry, unique_repo: str
) -> None:
    digest = registry_none.push_image(unique_repo, "list", "docker-list")
    body, _ = registry_none.manifest(unique_repo, "list")
    amd64 = json.loads(body)["manifests"][0]["digest"]
    url = f"{registry_none.url}/v2/{unique_repo}/manifests/list"

    resp = _HTTP.head(url, headers={"Accept": DOCKER_MANIFEST})

    assert resp.headers["Docker-Content-Digest"] == amd64 != digest


# -- basic auth ----------------------------------------------------------------------------


def test_basic_wrong_password_is_401(registry_basic: RunningRegistry, unique_repo: str) -> None:
    registry_basic.push_image(unique_repo, "t")
    url = f"{registry_basic.url}/v2/{unique_repo}/manifests/t"

    accept = {"Accept": DOCKER_MANIFEST}
    wrong = _HTTP.head(url, headers=accept, auth=(registry_basic.user, "not-the-password"))
    right = _HTTP.head(url, headers=accept, auth=(registry_basic.user, registry_basic.password))
    reader = _HTTP.head(
        url, headers=accept, auth=(registry_basic.reader_user, registry_basic.reader_password)
    )

    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert right.status_code == 200
    assert reader.status_code == 200  # htpasswd has no ACL: the reader has full rights


# -- token auth ----------------------------------------------------------------------------


def test_token_response_and_jws_follow_the_spec(registry_token: RunningRegistry) -> None:
    ts = _ts(registry_token)
    resp = _token(ts, "repository:a/b:pull,push", (registry_token.user, registry_token.password))

    assert resp.status_code == 200
    body = resp.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert body["issued_at"].endswith("Z")
    header, claims, sig = _jwt(body["token"])
    assert header["typ"] == "JWT" and header["alg"] == "ES256"
    assert len(header["kid"].split(":")) == 12 and header["x5c"]
    assert len(sig) == 64
    assert claims["aud"] == ts.service and isinstance(claims["aud"], str)
    assert claims["iss"] == ts.issuer and claims["sub"] == registry_token.user
    assert claims["exp"] - claims["iat"] == 300 and claims["nbf"] == claims["iat"]
    assert claims["jti"]
    assert claims["access"] == [{"type": "repository", "name": "a/b", "actions": ["pull", "push"]}]
    assert ts.requests == 1


def test_reader_gets_pull_only_and_put_is_insufficient_scope(
    registry_token: RunningRegistry, unique_repo: str
) -> None:
    ts = _ts(registry_token)
    registry_token.push_image(unique_repo, "src")
    body, media_type = registry_token.manifest(unique_repo, "src")
    resp = _token(
        ts,
        f"repository:{unique_repo}:pull,push",
        (registry_token.reader_user, registry_token.reader_password),
    )
    assert resp.status_code == 200  # the intersection, never an error
    token = resp.json()["token"]
    assert _jwt(token)[1]["access"][0]["actions"] == ["pull"]
    bearer = {"Authorization": f"Bearer {token}"}
    url = f"{registry_token.url}/v2/{unique_repo}/manifests"

    pulled = _HTTP.get(f"{url}/src", headers={**bearer, "Accept": media_type})
    pushed = _HTTP.put(f"{url}/dst", headers={**bearer, "Content-Type": media_type}, content=body)

    assert pulled.status_code == 200
    assert pushed.status_code == 401
    assert 'error="insufficient_scope"' in pushed.headers["WWW-Authenticate"]
    # distribution lists the actions in Go map order: either order is the same scope.
    challenge = pushed.headers["WWW-Authenticate"]
    assert any(f'scope="repository:{unique_repo}:{a}"' in challenge for a in PUSH_PULL_ORDERS)


def test_expired_token_is_invalid_token(registry_token: RunningRegistry, unique_repo: str) -> None:
    ts = _ts(registry_token)
    registry_token.push_image(unique_repo, "t")
    grant = [Grant("repository", unique_repo, ("pull",))]
    expired = ts.mint("user", grant, ttl=300, now=time.time() - 420)  # exp = now - 120 s
    url = f"{registry_token.url}/v2/{unique_repo}/manifests/t"

    resp = _HTTP.head(url, headers={"Authorization": f"Bearer {expired}"})

    assert resp.status_code == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


def test_issue_expired_knob_serves_expired_tokens_with_a_normal_expires_in(
    registry_token: RunningRegistry, unique_repo: str
) -> None:
    ts = _ts(registry_token)
    registry_token.push_image(unique_repo, "t")
    ts.issue_expired = 1
    creds = (registry_token.user, registry_token.password)
    url = f"{registry_token.url}/v2/{unique_repo}/manifests/t"
    statuses = []
    for _ in range(2):
        body = _token(ts, f"repository:{unique_repo}:pull", creds).json()
        assert body["expires_in"] == 300
        auth = {"Authorization": f"Bearer {body['token']}", "Accept": DOCKER_MANIFEST}
        statuses.append(_HTTP.head(url, headers=auth).status_code)
    assert statuses == [401, 200]


def test_token_server_rejects_bad_basic_and_serves_anonymous_nothing(
    registry_token: RunningRegistry,
) -> None:
    ts = _ts(registry_token)
    bad = _token(ts, "repository:a/b:pull", (registry_token.user, "wrong"))
    anonymous = _token(ts, "repository:a/b:pull")
    wrong_service = _token(ts, "repository:a/b:pull", service="elsewhere")

    assert bad.status_code == 401
    assert anonymous.status_code == 200
    assert _jwt(anonymous.json()["token"])[1]["access"][0]["actions"] == []
    assert wrong_service.status_code == 400
    assert ts.requests == 3
    assert [r.status for r in ts.log] == [401, 200, 400]
    assert [r.user for r in ts.log] == [None, None, None]


def test_token_knobs_shape_the_answer(registry_token: RunningRegistry) -> None:
    ts = _ts(registry_token)
    creds = (registry_token.user, registry_token.password)
    ts.token_only = True
    ts.omit_expires_in = True
    ts.token_ttl = 90

    body = _token(ts, "repository:a/b:pull", creds).json()

    assert set(body) == {"token", "issued_at"}
    claims = _jwt(body["token"])[1]
    assert claims["exp"] - claims["iat"] == 90


def test_deny_insufficient_knob_answers_403_like_ghcr(registry_token: RunningRegistry) -> None:
    ts = _ts(registry_token)
    ts.deny_insufficient = True
    reader = (registry_token.reader_user, registry_token.reader_password)

    assert _token(ts, "repository:a/b:pull,push", reader).status_code == 403
    assert _token(ts, "repository:a/b:pull", reader).status_code == 200


def test_token_server_state_is_reset_between_tests(registry_token: RunningRegistry) -> None:
    ts = _ts(registry_token)
    assert (ts.requests, ts.log, ts.token_ttl, ts.token_only) == (0, [], 300, False)


def test_several_scopes_repeated_and_space_separated(registry_token: RunningRegistry) -> None:
    ts = _ts(registry_token)
    creds = (registry_token.reader_user, registry_token.reader_password)
    resp = _HTTP.get(
        ts.url,
        params=[
            ("service", ts.service),
            ("scope", "repository:a/b:pull repository:c:push"),
            ("scope", "repository:127.0.0.1:5000/d:pull,push"),
        ],
        auth=creds,
    )
    access = _jwt(resp.json()["token"])[1]["access"]
    assert access == [
        {"type": "repository", "name": "a/b", "actions": ["pull"]},
        {"type": "repository", "name": "c", "actions": []},
        {"type": "repository", "name": "127.0.0.1:5000/d", "actions": ["pull"]},
    ]


def test_parse_scopes_splits_actions_at_the_last_colon() -> None:
    assert parse_scopes(["repository:host:5000/x/y:pull,push", "junk", "registry:catalog:*"]) == [
        ("repository", "host:5000/x/y", ("pull", "push")),
        ("registry", "catalog", ("*",)),
    ]


# -- fault proxy ---------------------------------------------------------------------------


def test_proxy_forwards_pushes_and_reads_unchanged(
    registry_token: RunningRegistry, unique_repo: str
) -> None:
    with FaultProxy(registry_token.url) as proxy:
        via_proxy = attrs.evolve(registry_token, url=proxy.url)
        digest = via_proxy.push_image(unique_repo, "p", "oci-index")

        assert via_proxy.head_digest(unique_repo, "p") == digest
        assert via_proxy.manifest(unique_repo, "p") == registry_token.manifest(unique_repo, "p")
        assert registry_token.head_digest(unique_repo, "p") == digest
        challenge = _HTTP.get(f"{proxy.url}/v2/")
        assert challenge.status_code == 401
        assert challenge.headers["WWW-Authenticate"].startswith(
            f'Bearer realm="{_ts(registry_token).url}"'
        )

    methods = {(r.method, r.status) for r in proxy.log}
    assert {("POST", 202), ("PUT", 201), ("HEAD", 200), ("GET", 200)} <= methods
    assert not any(r.canned for r in proxy.log)


def test_proxy_serves_scripted_answers_in_order_then_forwards(
    registry_none: RunningRegistry, unique_repo: str
) -> None:
    digest = registry_none.push_image(unique_repo, "t")
    url = f"{unique_repo}/manifests/t"
    too_many = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
    with FaultProxy(registry_none.url) as proxy:
        proxy.script(FaultResponse(429, {"Retry-After": "1"}, too_many), FaultResponse(503))
        with httpx.Client(base_url=f"{proxy.url}/v2/", headers={"Accept": DOCKER_MANIFEST}) as c:
            first, second, third = (c.get(url) for _ in range(3))

    assert (first.status_code, first.headers["Retry-After"], first.content) == (429, "1", too_many)
    assert (second.status_code, second.content) == (503, b"")
    assert third.status_code == 200
    assert third.headers["Docker-Content-Digest"] == digest
    assert [(r.status, r.canned) for r in proxy.log] == [(429, True), (503, True), (200, False)]
    assert proxy.log[0].at <= proxy.log[1].at <= proxy.log[2].at


def test_proxy_hang_never_answers_and_stop_does_not_block(
    registry_none: RunningRegistry,
) -> None:
    proxy = FaultProxy(registry_none.url)
    proxy.start()
    proxy.hang = True
    outcome: list[BaseException | int] = []

    def call() -> None:
        try:
            outcome.append(httpx.get(f"{proxy.url}/v2/", timeout=30, trust_env=False).status_code)
        except httpx.TransportError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    deadline = time.monotonic() + 5
    while not proxy.log and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proxy.log and proxy.log[0].status is None

    started = time.monotonic()
    proxy.stop()
    caller.join(timeout=5)

    assert time.monotonic() - started < 2
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.TransportError)


async def test_proxy_and_helpers_work_from_trio(
    registry_basic: RunningRegistry, unique_repo: str
) -> None:
    digest = registry_basic.push_image(unique_repo, "t", "oci-manifest")
    with FaultProxy(registry_basic.url) as proxy:
        proxy.script(FaultResponse(503))
        auth = (registry_basic.user, registry_basic.password)
        async with httpx.AsyncClient(auth=auth, headers={"Accept": OCI_MANIFEST}) as client:
            with trio.fail_after(10):
                url = f"{proxy.url}/v2/{unique_repo}/manifests/t"
                statuses = [(await client.head(url)).status_code for _ in range(2)]
                resp = await client.head(url)
    assert statuses == [503, 200]
    assert resp.headers["Docker-Content-Digest"] == digest
    assert int(resp.headers["Content-Length"]) > 0


def test_proxy_answers_without_waiting_for_a_delayed_ack(registry_none: RunningRegistry) -> None:
    # Headers and body are separate writes; with Nagle on, the body of every answer on a
    # kept-alive connection waited for the client's delayed ACK (~40 ms) and benches read slow.
    body = b'{"schemaVersion":2}' * 50
    with FaultProxy(registry_none.url) as proxy, httpx.Client(trust_env=False) as http:
        durations = []
        for _ in range(15):
            proxy.script(FaultResponse(200, {"Content-Type": "application/json"}, body))
            start = time.perf_counter()
            assert http.get(f"{proxy.url}/v2/").content == body
            durations.append(time.perf_counter() - start)
    durations.sort()
    assert durations[len(durations) // 2] < 0.02, durations

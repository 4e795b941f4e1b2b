"""Unit tests for the registry auth flow and the header/body parsers it and the client share.

The auth flow is a plain generator (httpx drives it), so these tests drive it by hand: send it
the responses a registry and a token server would send and look at every request it yields.
The end-to-end behaviour against a real registry is in test_registry.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Generator

import httpx
import pytest

from gopher_updater.manifest import Manifest, normalize_repository
from gopher_updater.registry_auth import RegistryAuth, decode_jwt_claims
from gopher_updater.registry_errors import (
    DigestMismatch,
    ManifestUnknown,
    RegistryAuthError,
    RegistryError,
    RegistryRequestError,
    RegistryUnavailable,
    error_for_response,
    parse_challenges,
    parse_ratelimit,
    parse_registry_error,
    parse_retry_after,
)

PASSWORD = "s3cret-Pa55word"
REGISTRY = "https://registry.example.com"
REALM = "https://auth.example.com/token"
MANIFEST_URL = f"{REGISTRY}/v2/org/app/manifests/release-v1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_auth(clock: FakeClock | None = None, user: str = "alice") -> RegistryAuth:
    return RegistryAuth(
        user=user, password=PASSWORD, repository="org/app", clock=clock or FakeClock()
    )


def jwt(claims: dict[str, object]) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'ES256', 'typ': 'JWT'})}.{part(claims)}.c2ln"


def challenge(request: httpx.Request, value: str) -> httpx.Response:
    return httpx.Response(401, headers={"WWW-Authenticate": value}, request=request)


def token_response(request: httpx.Request, body: dict[str, object]) -> httpx.Response:
    return httpx.Response(200, json=body, request=request)


def bearer_challenge(**extra: str) -> str:
    params = {"realm": REALM, "service": "registry.example.com", **extra}
    return "Bearer " + ",".join(f'{k}="{v}"' for k, v in params.items())


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def drive_to_token(
    auth: RegistryAuth, url: str = MANIFEST_URL, **challenge_extra: str
) -> tuple[Generator[httpx.Request, httpx.Response, None], httpx.Request, httpx.Request]:
    """Run a fresh flow until it yields its token request."""
    flow = auth.auth_flow(httpx.Request("HEAD", url))
    first = next(flow)
    token_req = flow.send(challenge(first, bearer_challenge(**challenge_extra)))
    return flow, first, token_req


# -- Bearer -------------------------------------------------------------------------------


def test_bearer_builds_its_own_scope_and_sends_credentials_only_to_the_realm() -> None:
    auth = make_auth()
    # GHCR puts a placeholder scope on its challenge; it must not be used.
    flow, first, token_req = drive_to_token(auth, scope="repository:user/image:pull")
    assert "authorization" not in first.headers
    assert token_req.url.host == "auth.example.com"
    assert token_req.url.params.get_list("scope") == ["repository:org/app:pull,push"]
    assert token_req.url.params["service"] == "registry.example.com"
    assert token_req.headers["authorization"] == basic_header("alice", PASSWORD)

    retry = flow.send(token_response(token_req, {"token": "tok-1", "expires_in": 300}))
    assert retry.headers["authorization"] == "Bearer tok-1"
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200, request=retry))


def test_cached_token_is_attached_preemptively_until_shortly_before_expiry() -> None:
    clock = FakeClock()
    auth = make_auth(clock)
    flow, _, token_req = drive_to_token(auth)
    retry = flow.send(token_response(token_req, {"access_token": "tok-1", "expires_in": 100}))
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200, request=retry))

    clock.now += 85  # still comfortably valid: no round trip to the realm
    flow = auth.auth_flow(httpx.Request("PUT", MANIFEST_URL, content=b"{}"))
    assert next(flow).headers["authorization"] == "Bearer tok-1"

    clock.now += 10  # within the renewal margin: the request goes out bare again
    flow = auth.auth_flow(httpx.Request("HEAD", MANIFEST_URL))
    assert "authorization" not in next(flow).headers


def test_missing_expires_in_means_sixty_seconds() -> None:
    clock = FakeClock()
    auth = make_auth(clock)
    flow, _, token_req = drive_to_token(auth)
    flow.send(token_response(token_req, {"token": "tok-1"}))
    clock.now += 45
    assert next(auth.auth_flow(httpx.Request("GET", MANIFEST_URL))).headers.get("authorization")
    clock.now += 15
    assert "authorization" not in next(auth.auth_flow(httpx.Request("GET", MANIFEST_URL))).headers


@pytest.mark.parametrize("error", ["invalid_token", "insufficient_scope"])
def test_rejected_token_is_refetched_once_then_the_401_is_final(error: str) -> None:
    auth = make_auth()
    flow, _, token_req = drive_to_token(auth)
    flow.send(token_response(token_req, {"token": "old", "expires_in": 300}))

    flow = auth.auth_flow(httpx.Request("PUT", MANIFEST_URL, content=b"{}"))
    sent = next(flow)
    assert sent.headers["authorization"] == "Bearer old"
    token_req = flow.send(challenge(sent, bearer_challenge(error=error)))
    assert token_req.url.host == "auth.example.com"
    retry = flow.send(token_response(token_req, {"token": "new", "expires_in": 300}))
    assert retry.headers["authorization"] == "Bearer new"
    with pytest.raises(StopIteration):  # second 401: no further token request, no loop
        flow.send(challenge(retry, bearer_challenge(error=error)))


def test_a_fresh_token_rejected_as_invalid_is_refetched_once() -> None:
    auth = make_auth()
    flow, _, token_req = drive_to_token(auth)
    retry = flow.send(token_response(token_req, {"token": "born-expired", "expires_in": 300}))
    token_req = flow.send(challenge(retry, bearer_challenge(error="invalid_token")))
    retry = flow.send(token_response(token_req, {"token": "good", "expires_in": 300}))
    assert retry.headers["authorization"] == "Bearer good"
    with pytest.raises(StopIteration):
        flow.send(challenge(retry, bearer_challenge(error="invalid_token")))


def test_a_fresh_token_rejected_without_an_error_code_is_final() -> None:
    auth = make_auth()
    flow, _, token_req = drive_to_token(auth)
    retry = flow.send(token_response(token_req, {"token": "t", "expires_in": 300}))
    with pytest.raises(StopIteration):  # e.g. Docker Hub on a repository that does not exist
        flow.send(challenge(retry, bearer_challenge()))


def test_plain_http_realm_is_refused_for_an_https_registry() -> None:
    auth = make_auth()
    flow = auth.auth_flow(httpx.Request("GET", MANIFEST_URL))
    first = next(flow)
    value = 'Bearer realm="http://auth.example.com/token",service="x"'
    with pytest.raises(RegistryAuthError, match="plain-http token realm"):
        flow.send(challenge(first, value))


def test_plain_http_realm_is_fine_for_a_plain_http_registry() -> None:
    auth = make_auth()
    flow = auth.auth_flow(httpx.Request("GET", "http://127.0.0.1:5000/v2/"))
    first = next(flow)
    token_req = flow.send(challenge(first, 'Bearer realm="http://127.0.0.1:5001/token"'))
    assert str(token_req.url).startswith("http://127.0.0.1:5001/token?")


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "token endpoint: bad credentials"),
        (403, "token endpoint: credentials lack write access"),
    ],
)
def test_token_endpoint_refusals_are_auth_errors(status: int, message: str) -> None:
    auth = make_auth()
    flow, _, token_req = drive_to_token(auth)
    with pytest.raises(RegistryAuthError) as info:
        flow.send(httpx.Response(status, json={"details": "no"}, request=token_req))
    assert str(info.value) == f"{message} [HTTP {status}]"
    assert not info.value.retryable


def test_token_endpoint_503_is_retryable_with_its_retry_after() -> None:
    auth = make_auth()
    flow, _, token_req = drive_to_token(auth)
    with pytest.raises(RegistryUnavailable) as info:
        flow.send(httpx.Response(503, headers={"Retry-After": "7"}, request=token_req))
    assert info.value.retryable
    assert info.value.retry_after == 7.0


def test_anonymous_token_request_carries_no_credentials() -> None:
    auth = make_auth(user="")
    _, _, token_req = drive_to_token(auth)
    assert "authorization" not in token_req.headers


# -- Basic --------------------------------------------------------------------------------


def test_basic_challenge_retries_with_basic_then_preempts_only_that_origin() -> None:
    auth = make_auth()
    flow = auth.auth_flow(httpx.Request("GET", MANIFEST_URL))
    first = next(flow)
    retry = flow.send(challenge(first, 'Basic realm="Registry Realm"'))
    assert retry.headers["authorization"] == basic_header("alice", PASSWORD)
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200, request=retry))

    assert next(auth.auth_flow(httpx.Request("GET", MANIFEST_URL))).headers["authorization"]
    other = next(auth.auth_flow(httpx.Request("GET", "https://elsewhere.example.com/v2/")))
    assert "authorization" not in other.headers

    flow = auth.auth_flow(httpx.Request("GET", MANIFEST_URL))
    sent = next(flow)
    with pytest.raises(StopIteration):  # rejected Basic credentials: no second try
        flow.send(challenge(sent, 'Basic realm="Registry Realm"'))


def test_first_basic_or_bearer_challenge_wins() -> None:
    auth = make_auth()
    flow = auth.auth_flow(httpx.Request("GET", MANIFEST_URL))
    first = next(flow)
    value = f'Negotiate, {bearer_challenge()}, Basic realm="x"'
    token_req = flow.send(challenge(first, value))
    assert token_req.url.host == "auth.example.com"


def test_no_challenge_means_no_credentials() -> None:
    auth = make_auth()
    flow = auth.auth_flow(httpx.Request("GET", MANIFEST_URL))
    first = next(flow)
    assert "authorization" not in first.headers
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(401, request=first))


# -- granted actions ----------------------------------------------------------------------


def test_granted_actions_reads_the_unverified_jwt_access_claim() -> None:
    auth = make_auth()
    flow, _, token_req = drive_to_token(auth)
    access = [
        {"type": "repository", "name": "org/app", "actions": ["pull"]},
        {"type": "repository", "name": "org/other", "actions": ["push"]},
    ]
    flow.send(token_response(token_req, {"token": jwt({"access": access}), "expires_in": 300}))
    assert auth.granted_actions() == frozenset({"pull"})


def test_opaque_token_grants_are_unknown() -> None:
    auth = make_auth()
    flow, _, token_req = drive_to_token(auth)
    flow.send(token_response(token_req, {"token": "djE6b3JnL2FwcDoxNzAw", "expires_in": 300}))
    assert auth.granted_actions() is None
    assert decode_jwt_claims("a.b") is None
    assert decode_jwt_claims("a.!!!.c") is None


# -- secrets ------------------------------------------------------------------------------


def test_repr_and_redact_never_show_secrets() -> None:
    auth = make_auth()
    flow, _, token_req = drive_to_token(auth)
    flow.send(token_response(token_req, {"token": "very-secret-token", "expires_in": 300}))
    text = repr(auth)
    assert "alice" in text
    assert PASSWORD not in text
    assert "very-secret-token" not in text
    echoed = f"bad header Basic x {PASSWORD} and Bearer very-secret-token"
    assert auth.redact(echoed) == "bad header Basic x <redacted> and Bearer <redacted>"


# -- parsers ------------------------------------------------------------------------------


def test_parse_challenges_keeps_quoted_commas() -> None:
    (c,) = parse_challenges(
        ['Bearer realm="https://a/token",service="svc",scope="repository:x/y:pull,push"']
    )
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://a/token",
        "service": "svc",
        "scope": "repository:x/y:pull,push",
    }
    basic, bearer = parse_challenges(['Basic realm="Registry Realm"', 'Bearer realm="r"'])
    assert (basic.scheme, basic.params) == ("basic", {"realm": "Registry Realm"})
    assert bearer.params == {"realm": "r"}


def test_parse_retry_after() -> None:
    now = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after(None) is None


def test_parse_ratelimit() -> None:
    assert parse_ratelimit("76;w=21600") == (76, 21600.0)
    assert parse_ratelimit("0") == (0, None)
    assert parse_ratelimit("x;w=1") is None
    assert parse_ratelimit(None) is None


def test_parse_registry_error() -> None:
    body = json.dumps(
        {
            "errors": [
                {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {}},
                {"code": "NAME_UNKNOWN", "message": "repository name not known"},
            ]
        }
    ).encode()
    assert parse_registry_error(body) == ("MANIFEST_UNKNOWN", "manifest unknown (+1 more)")
    assert parse_registry_error(b"404 page not found\n") == (None, "404 page not found")
    assert parse_registry_error(b"") == (None, "")
    assert parse_registry_error(b'{"errors": []}') == (None, '{"errors": []}')
    assert parse_registry_error(b"x" * 500)[1] == "x" * 200


def respond(
    status: int, method: str = "GET", headers: dict[str, str] | None = None, body: bytes = b""
) -> httpx.Response:
    return httpx.Response(
        status, headers=headers, content=body, request=httpx.Request(method, MANIFEST_URL)
    )


def mapped(response: httpx.Response, tag: str | None = "release-v1") -> RegistryError:
    return error_for_response(response, "retag", tag, lambda text: text.replace(PASSWORD, "***"))


def test_error_mapping() -> None:
    scope = respond(401, "PUT", {"WWW-Authenticate": bearer_challenge(error="insufficient_scope")})
    err = mapped(scope)
    assert isinstance(err, RegistryAuthError)
    assert "lack write access" in str(err)

    err = mapped(respond(403, "PUT", body=b'{"errors":[{"code":"DENIED","message":"denied"}]}'))
    assert type(err) is RegistryRequestError
    assert str(err) == (
        "retag release-v1: tag immutable or no write permission: denied [HTTP 403, DENIED]"
    )

    err = mapped(respond(404, body=b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"m"}]}'))
    assert isinstance(err, ManifestUnknown)
    assert err.code == "MANIFEST_UNKNOWN"
    assert not isinstance(mapped(respond(404), tag=None), ManifestUnknown)

    err = mapped(respond(503, headers={"Retry-After": "2"}, body=b"upstream down"))
    assert isinstance(err, RegistryUnavailable)
    assert (err.retryable, err.retry_after, err.message) == (True, 2.0, "upstream down")

    err = mapped(respond(400, body=f"bad request from {PASSWORD}".encode()))
    assert type(err) is RegistryRequestError
    assert not err.retryable
    assert PASSWORD not in str(err)


@pytest.mark.usefixtures("structlog_via_stdlib")
def test_docker_hub_exhausted_pull_limit_waits_for_the_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull limit"}]}'
    headers = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600"}
    err = mapped(respond(429, headers=headers, body=body))
    assert isinstance(err, RegistryUnavailable)
    assert err.retry_after == 21600.0
    assert err.code == "TOOMANYREQUESTS"
    assert "rate limit exhausted" in caplog.text
    err = mapped(respond(429, headers={**headers, "Retry-After": "30"}, body=body))
    assert err.retry_after == 30.0  # Retry-After, when sent, wins over the window


def test_error_str_and_repr_carry_context() -> None:
    err = DigestMismatch("bytes differ", operation="get", tag="t1", status=200)
    assert str(err) == "get t1: bytes differ [HTTP 200]"
    assert repr(err) == "DigestMismatch('get t1: bytes differ [HTTP 200]')"
    assert str(RegistryError("plain")) == "plain"


# -- names and values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path", "expected"),
    [
        ("https://registry-1.docker.io", "nginx", "library/nginx"),
        ("https://index.docker.io", "nginx", "library/nginx"),
        ("https://registry-1.docker.io", "org/node", "org/node"),
        ("https://ghcr.io", "nginx", "nginx"),
        ("http://127.0.0.1:5000", "a/b-c__d.e/f", "a/b-c__d.e/f"),
    ],
)
def test_normalize_repository(url: str, path: str, expected: str) -> None:
    assert normalize_repository(url, path) == expected


@pytest.mark.parametrize("path", ["Org/App", "a//b", "-a", "a/", "a:b", "a" * 256, ""])
def test_normalize_repository_rejects_bad_names(path: str) -> None:
    with pytest.raises(ValueError, match="invalid repository name"):
        normalize_repository("https://ghcr.io", path)


def test_manifest_repr_hides_the_bytes_and_hashes_them() -> None:
    m = Manifest.from_bytes(b"{}", "application/vnd.oci.image.manifest.v1+json")
    assert m.digest.value == (
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )
    assert "<2 bytes>" in repr(m)

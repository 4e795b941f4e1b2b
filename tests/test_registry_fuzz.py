"""Structure-aware fuzzing of every registry parser and of the client over a hostile registry.

The property everywhere: whatever a registry or token server sends, only a typed
`RegistryError` (or a value) comes out; never RecursionError, OverflowError, ValueError,
KeyError... which would end the daemon at the halt. Answers are built from what registries
really send (distribution error bodies, challenges, Docker Hub rate-limit headers, manifests,
token answers) and then mutated: deep nesting, NaN/negative/huge numbers, wrong types,
truncation, oversized bodies, wrong content types, bad digests.

Example counts come from the hypothesis profile (`just fuzz` runs many more); these tests
must not set max_examples themselves.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gopher_updater.manifest import Outcome
from gopher_updater.registry_auth import RegistryAuth, decode_jwt_claims
from gopher_updater.registry_body import MAX_MANIFEST_BYTES, json_depth_ok, loads_bounded
from gopher_updater.registry_errors import (
    MAX_ADVERTISED_WAIT,
    RegistryError,
    error_for_response,
    parse_challenges,
    parse_ratelimit,
    parse_registry_error,
    parse_retry_after,
)
from gopher_updater.testing.registry_fake import OCI_MANIFEST, SOURCE, TARGET, FakeRegistry

pytestmark = pytest.mark.fuzz
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ---------------------------------------------------------------------------

header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)
hostile_number = st.one_of(
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e999", "-5", "-0", "0", "0.0001", ""]),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.just("9" * 400),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False), st.text(max_size=40),
)  # fmt: skip
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


@st.composite
def deep(draw: st.DrawFn) -> bytes:
    """JSON nested far deeper than any parser should follow (opened, maybe never closed)."""
    depth = draw(st.integers(min_value=50, max_value=5000))
    opener = draw(st.sampled_from([b"[", b'{"a":', b'{"errors":[']))
    closer = {b"[": b"]", b'{"a":': b"}", b'{"errors":[': b"]}"}[opener]
    return opener * depth + b"1" + (closer * depth if draw(st.booleans()) else b"")


def mutate(doc: bytes, draw: st.DrawFn) -> bytes:
    how = draw(st.sampled_from(["keep", "truncate", "garbage", "deep", "bytes"]))
    if how == "truncate" and doc:
        return doc[: draw(st.integers(min_value=0, max_value=len(doc) - 1))]
    if how == "garbage":
        return doc + draw(st.binary(max_size=20))
    if how == "deep":
        return draw(deep())
    if how == "bytes":
        return draw(st.binary(max_size=200))
    return doc


@st.composite
def error_bodies(draw: st.DrawFn) -> bytes:
    entry = draw(st.dictionaries(st.sampled_from(["code", "message", "detail"]), json_value))
    doc = draw(st.sampled_from([{"errors": [entry]}, {"errors": entry}, entry, [entry]]))
    return mutate(json.dumps(doc).encode(), draw)


@st.composite
def token_answers(draw: st.DrawFn) -> bytes:
    doc = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "token": st.one_of(st.text(max_size=40), json_value),
                "access_token": st.one_of(st.text(max_size=40), json_value),
                "expires_in": st.one_of(json_value, st.just(10**400), st.just(-(10**400))),
            },
        )
    )
    return mutate(json.dumps(doc).encode(), draw)


@st.composite
def challenges(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["Bearer", "Basic", "bearer", "Negotiate", ""]))
    keys = st.sampled_from(["realm", "service", "scope", "error", "x"])
    params = draw(st.dictionaries(keys, header_text, max_size=4))
    quoted = ",".join(f'{k}="{v}"' for k, v in params.items())
    return draw(st.sampled_from([f"{scheme} {quoted}", quoted, f"{scheme}"])) + draw(header_text)


@st.composite
def hostile_headers(draw: st.DrawFn) -> dict[str, str]:
    optional = {
        "Retry-After": st.one_of(hostile_number, header_text),
        "ratelimit-remaining": st.builds(lambda n, w: f"{n};w={w}", hostile_number, hostile_number),
        "ratelimit-limit": st.builds(lambda n, w: f"{n};w={w}", hostile_number, hostile_number),
        "WWW-Authenticate": challenges(),
        "Content-Type": st.sampled_from([OCI_MANIFEST, "application/json", "text/html", "", "x/y"]),
        "Docker-Content-Digest": st.one_of(
            st.just("sha256:" + "0" * 64), st.just("sha256:zz"), header_text
        ),
        "Content-Encoding": st.sampled_from(["gzip", "deflate", "br", "identity", "x"]),
    }
    return draw(st.fixed_dictionaries({}, optional=optional))


Answer = tuple[int, dict[str, str], bytes]
#: Built once: hypothesis keeps what each example drew, so a body built inside the strategy
#: cost 4 MiB per example (an 8,000-example `just fuzz` run was OOM-killed at 24 GB).
OVERSIZED = b"{" + b" " * MAX_MANIFEST_BYTES + b"}"
STATUSES = [200, 201, 202, 204, 301, 400, 401, 403, 404, 408, 429, 500, 503]


def response(answer: Answer) -> httpx.Response:
    """Built from a stream, so nothing is read (or decoded) until the code under test reads."""
    status, headers, body = answer
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    status = draw(st.sampled_from(STATUSES))
    body = draw(
        st.one_of(
            error_bodies(),
            st.just(json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode()),
            st.just(OVERSIZED),
            st.binary(max_size=300),
        )
    )
    return status, draw(hostile_headers()), body


# -- the parsers --------------------------------------------------------------------------


@FUZZ
@given(body=st.one_of(error_bodies(), deep(), st.binary(max_size=2000)))
def test_error_bodies_parse_to_code_and_message(body: bytes) -> None:
    code, message = parse_registry_error(body)
    assert code is None or (isinstance(code, str) and len(code) <= 80)
    assert isinstance(message, str) and len(message) <= 400


@FUZZ
@given(body=st.one_of(deep(), error_bodies(), st.binary(max_size=500)))
def test_bounded_json_never_raises(body: bytes) -> None:
    doc = loads_bounded(body)
    if not json_depth_ok(body):
        assert doc is None


@FUZZ
@given(values=st.lists(st.one_of(challenges(), header_text), max_size=4))
def test_challenges_parse_to_challenges(values: list[str]) -> None:
    for challenge in parse_challenges(values):
        assert challenge.scheme == challenge.scheme.lower()
        assert all(isinstance(v, str) for v in challenge.params.values())


@FUZZ
@given(value=st.one_of(st.none(), hostile_number, header_text))
def test_retry_after_is_absent_or_a_bounded_wait(value: str | None) -> None:
    wait = parse_retry_after(value)
    assert wait is None or (math.isfinite(wait) and 0 <= wait <= MAX_ADVERTISED_WAIT)


@FUZZ
@given(count=hostile_number, window=hostile_number, junk=header_text)
def test_ratelimit_is_absent_or_bounded(count: str, window: str, junk: str) -> None:
    for value in (f"{count};w={window}", f"{count};{junk}", junk):
        parsed = parse_ratelimit(value)
        if parsed is not None:
            assert parsed[0] >= 0
            assert parsed[1] is None or (math.isfinite(parsed[1]) and parsed[1] >= 0)


@FUZZ
@given(answer=answers(), method=st.sampled_from(["GET", "HEAD", "PUT"]))
def test_every_error_answer_maps_to_a_typed_error(answer: Answer, method: str) -> None:
    status, headers, body = answer
    headers = {k: v for k, v in headers.items() if k != "Content-Encoding"}  # body as read
    request = httpx.Request(method, "https://registry.test/v2/a/manifests/t")
    error = error_for_response(
        httpx.Response(status, headers=headers, content=body, request=request),
        "retag", "t", lambda text: text,
    )  # fmt: skip
    assert isinstance(error, RegistryError)
    assert error.retry_after is None or math.isfinite(error.retry_after)
    str(error), repr(error)


@FUZZ
@given(body=token_answers(), status=st.sampled_from([200, 401, 403, 404, 429, 500]))
def test_token_answers_give_a_token_or_a_typed_error(body: bytes, status: int) -> None:
    auth = RegistryAuth(user="alice", password="pw-123456", repository="org/app")
    flow = auth.auth_flow(httpx.Request("GET", "https://registry.test/v2/"))
    first = next(flow)
    realm = 'Bearer realm="https://auth.test/token",service="s"'
    token_request = flow.send(
        httpx.Response(401, headers={"WWW-Authenticate": realm}, request=first)
    )
    try:
        retried = flow.send(httpx.Response(status, content=body, request=token_request))
    except RegistryError:
        return
    assert retried.headers["authorization"].startswith("Bearer ")
    auth.granted_actions()  # reads the (maybe hostile) token as a JWT


@FUZZ
@given(payload=st.one_of(deep(), error_bodies(), st.binary(max_size=200)), junk=header_text)
def test_jwt_claims_are_a_dict_or_none(payload: bytes, junk: str) -> None:
    import base64

    middle = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    for token in (f"a.{middle}.c", junk, f"{junk}.{junk}.{junk}"):
        claims = decode_jwt_claims(token)
        assert claims is None or isinstance(claims, dict)


# -- the client over a hostile registry ---------------------------------------------------


def run_on_mock_clock(fake: FakeRegistry, operation: str) -> Any:
    async def main() -> Any:
        async with fake.client(timeout=2.0, deadline=5.0) as client:
            if operation == "retag":
                return await client.retag(SOURCE, TARGET)
            if operation == "check_push_access":
                return await client.check_push_access()
            return await getattr(client, operation)(SOURCE)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@FUZZ
@given(
    served=st.lists(answers(), min_size=1, max_size=6),
    operation=st.sampled_from(["retag", "digest", "get", "check_push_access"]),
)
def test_the_client_raises_only_typed_errors(served: list[Answer], operation: str) -> None:
    fake = FakeRegistry(*(lambda request, a=a: response(a) for a in served))
    try:
        result = run_on_mock_clock(fake, operation)
    except RegistryError as exc:
        str(exc), repr(exc)
        return
    if operation == "retag":
        assert result.outcome in set(Outcome)

"""Registry authentication (none, Basic, Docker token) as one `httpx.Auth`, and the token.

Why `auth_flow` yields the token request instead of calling a client: httpx drives an auth
flow as a generator and sends whatever it yields through the *same* client that is sending
the original request (same transport, connection pool, event hooks, TLS settings), then sends
the response back in. DigestAuth uses this to yield its retry; we also yield the GET to the
token realm. So the flow does no I/O itself: it needs no reference to an `AsyncClient`
(no cycle, no "which client?" question), it works unchanged for `Client` and `AsyncClient`,
the token request is covered by the caller's trio cancel scope (the per-request timeout) and
counted by the caller's request hooks. The price is that the token response must be read
before the flow sees it, hence `requires_response_body = True` (manifest bodies are small).

State (the token cache, which origin speaks which scheme) lives on the instance. It is touched
only between yields, from one trio thread, so it needs no lock; two concurrent cold requests
may both fetch a token, which is harmless.

Because every response passes through the flow first, the flow is also where bodies are read
within bounds (`registry_body.read_bounded`): manifests up to 4 MiB, error bodies and token
answers truncated or refused at 64 KiB. The errors and header parsers live in
`registry_errors`.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Literal

import attrs
import httpx

from gopher_updater.registry_body import (
    MAX_ERROR_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_TOKEN_BYTES,
    BodyTooLarge,
    UnsupportedEncoding,
    bounded_number,
    loads_bounded,
    read_bounded,
)
from gopher_updater.registry_errors import (
    Challenge,
    RegistryAuthError,
    RegistryRequestError,
    RegistryUnavailable,
    parse_challenges,
    parse_retry_after,
)
from gopher_updater.safe_text import redact_text

_TOKEN_REFRESH_ERRORS = frozenset({"invalid_token", "insufficient_scope"})
_DEFAULT_EXPIRES_IN = 60.0
#: A token is never cached for longer than a day, whatever `expires_in` says.
_MAX_EXPIRES_IN = 86400.0
_USER_AGENT = "gopher-updater"
#: What can go in an Authorization header: visible ASCII, no spaces (RFC 6750 is stricter).
_TOKEN_RE = re.compile(r"[\x21-\x7e]{1,16384}")


def decode_jwt_claims(token: str) -> dict[str, object] | None:
    """The payload of a compact JWS, *unverified*; None if `token` is not a JWT (opaque).

    We never trust it for anything but a hint: which actions the token server granted.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    if len(token) > MAX_TOKEN_BYTES:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = loads_bounded(base64.urlsafe_b64decode(payload), max_bytes=MAX_TOKEN_BYTES)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


@attrs.frozen
class _Token:
    value: str = attrs.field(repr=False)
    expires_at: float


class RegistryAuth(httpx.Auth):
    """Authenticates every request to one repository, whatever scheme the registry asks for.

    - No challenge (401 never comes): requests go out bare.
    - `Basic`: user/password on the retry, then preemptively to that origin only.
    - `Bearer`: GET `realm?service=…&scope=repository:<repository>:<actions>` with the
      credentials as Basic (to the realm host only; anonymous if no user), cache the token per
      scope until shortly before `expires_in`, and attach it preemptively afterwards. The
      challenge's own `scope` is ignored (GHCR sends a placeholder); we build ours.
    - One refetch: a 401 to a request that carried a cached token, or a 401 carrying
      `error="invalid_token"`/`"insufficient_scope"` to a freshly fetched one, gets exactly
      one new token and one retry. The next 401 is returned to the caller, who reports it.
      A token-endpoint refusal raises at once (401 bad credentials, 403 no write access).
    """

    requires_response_body = True

    def __init__(
        self,
        *,
        user: str,
        password: str,
        repository: str,
        actions: str = "pull,push",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._user = user
        self._password = password
        self.scope = f"repository:{repository}:{actions}"
        self._clock = clock
        self._tokens: dict[str, _Token] = {}
        self._schemes: dict[tuple[str, str, int | None], Literal["basic", "bearer"]] = {}

    def __repr__(self) -> str:
        password = "<redacted>" if self._password else ""
        return (
            f"RegistryAuth(user={self._user!r}, password={password!r},"
            f" scope={self.scope!r}, cached_tokens={len(self._tokens)})"
        )

    # -- public helpers -------------------------------------------------------------------

    def scheme_for(self, url: httpx.URL) -> Literal["basic", "bearer"] | None:
        """The scheme the registry at `url`'s origin challenged with (None: never challenged)."""
        return self._schemes.get(_origin(url))

    def granted_actions(self) -> frozenset[str] | None:
        """Actions the cached token grants on our repository, from its JWT `access` claim.

        A token server grants the intersection of asked and permitted actions *silently*, so
        this is the only early way to see a read-only credential. Not verified (we are not
        the audience that checks signatures; the registry is). None if no token is cached or
        it is opaque (not a JWT, e.g. GHCR): callers then trust it and learn at the PUT.
        """
        token = self._fresh_token(self.scope)
        claims = decode_jwt_claims(token) if token else None
        if claims is None:
            return None
        name = self.scope.split(":")[1]
        actions: set[str] = set()
        access = claims.get("access")
        for entry in access if isinstance(access, list) else []:
            if (
                isinstance(entry, dict)
                and entry.get("type") == "repository"
                and entry.get("name") == name
                and isinstance(entry.get("actions"), list)
            ):
                actions.update(str(a) for a in entry["actions"])
        return frozenset(actions)

    def redact(self, text: str) -> str:
        """Remove our secrets from text a server sent back (it might echo a header): the
        password, the Basic credential, every cached token, and anything that looks like one."""
        secrets = (self._password, self._basic().split()[1] if self._password else "",
                   *(t.value for t in self._tokens.values()))  # fmt: skip
        return redact_text(text, secrets)

    # -- bounded bodies ---------------------------------------------------------------------

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """httpx's own driver, except that each body is read within bounds before the flow
        (or the caller) sees it: a hostile registry cannot make us buffer without limit."""
        flow = self.auth_flow(request)
        sent = next(flow)
        while True:
            response = yield sent
            is_token = sent is not request
            ok = response.status_code == 200 if is_token else response.is_success
            limit = MAX_TOKEN_BYTES if is_token else MAX_MANIFEST_BYTES if ok else MAX_ERROR_BYTES
            try:
                await read_bounded(response, limit, truncate=not ok)
            except (BodyTooLarge, UnsupportedEncoding) as exc:
                where = "token endpoint" if is_token else "registry"
                raise RegistryRequestError(f"{where} {exc}", status=response.status_code) from None
            try:
                sent = flow.send(response)
            except StopIteration:
                return

    # -- the flow -------------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.setdefault("User-Agent", _USER_AGENT)
        scheme = self._schemes.get(_origin(request.url))
        sent_token = None
        if scheme == "basic" and self._user:
            request.headers["Authorization"] = self._basic()
        elif scheme == "bearer" and (sent_token := self._fresh_token(self.scope)):
            request.headers["Authorization"] = f"Bearer {sent_token}"

        response = yield request
        if response.status_code != 401:
            return
        challenge = next(
            (
                c
                for c in parse_challenges(response.headers.get_list("www-authenticate"))
                if c.scheme in ("basic", "bearer")
            ),
            None,
        )
        if challenge is None:
            return
        if challenge.scheme == "basic":
            if not self._user or scheme == "basic":  # nothing to add, or already rejected
                return
            self._schemes[_origin(request.url)] = "basic"
            request.headers["Authorization"] = self._basic()
            yield request
            return

        self._schemes[_origin(request.url)] = "bearer"
        # A rejected cached token was the one chance; a cold flow may refetch once more.
        refetches = 0 if sent_token is not None else 1
        token = None if sent_token is not None else self._fresh_token(self.scope)
        while True:
            if token is None:
                self._tokens.pop(self.scope, None)
                token = self._store_token((yield self._token_request(challenge, request.url)))
            request.headers["Authorization"] = f"Bearer {token}"
            response = yield request
            if response.status_code != 401 or refetches == 0:
                return
            errors = parse_challenges(response.headers.get_list("www-authenticate"))
            if not any(c.params.get("error") in _TOKEN_REFRESH_ERRORS for c in errors):
                return
            refetches, token = refetches - 1, None

    # -- internals ------------------------------------------------------------------------

    def _basic(self) -> str:
        raw = f"{self._user}:{self._password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def _fresh_token(self, scope: str) -> str | None:
        cached = self._tokens.get(scope)
        if cached is None or cached.expires_at <= self._clock():
            return None
        return cached.value

    def _token_request(self, challenge: Challenge, registry_url: httpx.URL) -> httpx.Request:
        realm = challenge.params.get("realm", "")
        try:
            url = httpx.URL(realm)
        except httpx.InvalidURL:
            url = httpx.URL("")
        if url.scheme not in ("http", "https") or not url.host:
            raise RegistryAuthError("registry sent a Bearer challenge without a usable realm")
        if url.scheme != "https" and registry_url.scheme == "https":
            raise RegistryAuthError(
                f"refusing to send credentials to a plain-http token realm ({url.host})"
            )
        params = {"scope": self.scope}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
        if self._user:  # credentials go to the realm host, nowhere else
            headers["Authorization"] = self._basic()
        return httpx.Request("GET", url.copy_merge_params(params), headers=headers)

    def _store_token(self, response: httpx.Response) -> str:
        status = response.status_code
        if status == 401:
            who = "bad credentials" if self._user else "anonymous access refused"
            raise RegistryAuthError(f"token endpoint: {who}", status=status)
        if status == 403:
            raise RegistryAuthError("token endpoint: credentials lack write access", status=status)
        if status == 408 or status == 429 or status >= 500:
            raise RegistryUnavailable(
                "token endpoint unavailable",
                status=status,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status != 200:
            raise RegistryAuthError("token endpoint refused the request", status=status)
        body = loads_bounded(response.content, max_bytes=MAX_TOKEN_BYTES)
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        raw_expiry = body.get("expires_in") if isinstance(body, dict) else None
        expires_in = bounded_number(raw_expiry or _DEFAULT_EXPIRES_IN, low=0, high=_MAX_EXPIRES_IN)
        if expires_in is None:  # present but not a number: the default
            expires_in = _DEFAULT_EXPIRES_IN
        if not isinstance(token, str) or _TOKEN_RE.fullmatch(token) is None:
            raise RegistryAuthError("token endpoint answered without a token", status=status)
        # Renew a little early so a token never expires between our check and the registry's.
        margin = min(10.0, expires_in / 5)
        self._tokens[self.scope] = _Token(token, self._clock() + max(0.0, expires_in - margin))
        return token

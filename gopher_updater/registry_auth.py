"""Registry authentication (none, Basic, Docker token) as one `httpx.Auth`, plus the typed errors.

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
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import json
import logging
import time
import urllib.request
from collections.abc import Callable, Generator, Iterable
from typing import Literal

import attrs
import httpx

log = logging.getLogger("gopher_updater.registry")

_TOKEN_REFRESH_ERRORS = frozenset({"invalid_token", "insufficient_scope"})
_DEFAULT_EXPIRES_IN = 60.0
_USER_AGENT = "gopher-updater"


class RegistryError(Exception):
    """Base of every registry failure, with the context an operator needs to act on it.

    `retryable` and `retry_after` drive the retry policy; they are not part of the message.
    Messages never contain credentials or tokens (they are built from our own words plus the
    registry's error code/message, scrubbed by `RegistryAuth.redact`).
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        tag: str | None = None,
        status: int | None = None,
        code: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.tag = tag
        self.status = status
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after

    def with_context(self, operation: str, tag: str | None) -> RegistryError:
        """Fill in operation/tag if the raiser (e.g. the auth flow) could not know them."""
        self.operation = self.operation or operation
        self.tag = self.tag or tag
        return self

    def __str__(self) -> str:
        where = " ".join(p for p in (self.operation, self.tag) if p)
        extra = ", ".join(
            p for p in (f"HTTP {self.status}" if self.status else "", self.code or "") if p
        )
        return f"{where + ': ' if where else ''}{self.message}{f' [{extra}]' if extra else ''}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class RegistryAuthError(RegistryError):
    """Credentials rejected, or they do not grant what the operation needs."""


class RegistryUnavailable(RegistryError):
    """Timeouts, connection errors, 408/429/5xx: retried, and raised once retries run out."""


class RegistryRequestError(RegistryError):
    """Any other 4xx: retrying cannot help."""


class ManifestUnknown(RegistryRequestError):
    """The tag does not exist (404 / MANIFEST_UNKNOWN / NAME_UNKNOWN)."""


class DigestMismatch(RegistryError):
    """The registry's `Docker-Content-Digest` disagrees with the bytes we hashed."""


@attrs.frozen
class Challenge:
    """One `WWW-Authenticate` challenge: scheme (lower-case) and its parameters."""

    scheme: str
    params: dict[str, str] = attrs.field(factory=dict)


def parse_challenges(header_values: Iterable[str]) -> list[Challenge]:
    """Parse `WWW-Authenticate` values; several challenges may share one header line.

    `Bearer realm="https://a/token",service="s",error="insufficient_scope"` -> Challenge.
    A comma inside a quoted value (a scope list `pull,push`) is respected.
    """
    challenges: list[Challenge] = []
    for value in header_values:
        current: Challenge | None = None
        for item in urllib.request.parse_http_list(value):
            item = item.strip()
            if not item:
                continue
            head, sep, rest = item.partition(" ")
            if "=" not in head:  # a new scheme starts here (maybe with its first param)
                current = Challenge(scheme=head.lower())
                challenges.append(current)
                item = rest.strip() if sep else ""
                if not item:
                    continue
            if current is None or "=" not in item:
                continue
            key, _, raw = item.partition("=")
            raw = raw.strip()
            if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                raw = raw[1:-1].replace('\\"', '"')
            current.params[key.strip().lower()] = raw
    return challenges


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """`Retry-After` as seconds to wait: delta-seconds or an HTTP date; None if absent/garbage."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def parse_ratelimit(value: str | None) -> tuple[int, float | None] | None:
    """Docker Hub's `ratelimit-remaining: 76;w=21600` -> (76, 21600.0); None if absent/garbage."""
    if not value:
        return None
    count, _, rest = value.partition(";")
    window = None
    for part in rest.split(";"):
        key, _, raw = part.strip().partition("=")
        if key == "w":
            try:
                window = float(raw)
            except ValueError:
                window = None
    try:
        return int(count.strip()), window
    except ValueError:
        return None


def parse_registry_error(body: bytes) -> tuple[str | None, str]:
    """(code, message) from a distribution `{"errors": [...]}` body, or its plain text."""
    try:
        errors = json.loads(body)["errors"]
        code, message = str(errors[0].get("code") or "") or None, str(errors[0].get("message"))
        return code, message + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        text = body.decode("utf-8", "replace").strip().splitlines()
        return None, (text[0][:200] if text else "")


def error_for_response(
    response: httpx.Response, operation: str, tag: str | None, redact: Callable[[str], str]
) -> RegistryError:
    """Map a registry answer that is not 2xx to the typed error (retryable or final)."""
    status = response.status_code
    code, message = parse_registry_error(response.content)
    message = redact(message) or response.reason_phrase

    def error(
        cls: type[RegistryError], text: str, retry_after: float | None = None
    ) -> RegistryError:
        retryable = cls is RegistryUnavailable
        return cls(text, operation=operation, tag=tag, status=status, code=code,
                   retryable=retryable, retry_after=retry_after)  # fmt: skip

    if status == 401:
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        if any(c.params.get("error") == "insufficient_scope" for c in challenges):
            return error(RegistryAuthError, "credentials lack write access (insufficient_scope)")
        return error(
            RegistryAuthError, f"bad credentials, or no access to the repository: {message}"
        )
    if status == 403 and response.request.method == "PUT":
        return error(RegistryRequestError, f"tag immutable or no write permission: {message}")
    if status == 404 and tag is not None:
        return error(ManifestUnknown, f"not found: {message}")
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        limit = parse_ratelimit(response.headers.get("ratelimit-remaining"))
        if status == 429 and limit is not None and limit[0] == 0:
            retry_after = retry_after if retry_after is not None else limit[1]
            log.warning("registry pull rate limit exhausted; retry in %ss", retry_after)
        return error(RegistryUnavailable, message, retry_after)
    return error(RegistryRequestError, message)


def decode_jwt_claims(token: str) -> dict[str, object] | None:
    """The payload of a compact JWS, *unverified*; None if `token` is not a JWT (opaque).

    We never trust it for anything but a hint: which actions the token server granted.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
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
        """Remove our secrets from text a server sent back (it might echo a header)."""
        for secret in (self._password, *(t.value for t in self._tokens.values())):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "<redacted>")
        return text

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
                retryable=True,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status != 200:
            raise RegistryAuthError("token endpoint refused the request", status=status)
        try:
            body = json.loads(response.content)
            token = body.get("token") or body.get("access_token")
            expires_in = float(body.get("expires_in") or _DEFAULT_EXPIRES_IN)
        except (ValueError, AttributeError, TypeError):
            token, expires_in = None, 0.0
        if not isinstance(token, str) or not token:
            raise RegistryAuthError("token endpoint answered without a token", status=status)
        # Renew a little early so a token never expires between our check and the registry's.
        margin = min(10.0, expires_in / 5)
        self._tokens[self.scope] = _Token(token, self._clock() + max(0.0, expires_in - margin))
        return token

"""Registry client: read, write and retag manifests of one repository over the distribution API.

A retag copies only the manifest: GET the source tag's exact bytes and PUT them under the
target tag, so the digest (and every signature keyed by it) is preserved. HEADs come first
because they are free on Docker Hub's pull limit and make the operation idempotent.

Every HTTP exchange is bounded by `timeout` (a trio cancel scope around the whole request,
body included) and retried by stamina on connection errors, timeouts, 408/429/5xx; how long
it waits is `registry_retry`'s budget (Retry-After honoured within a floor and a ceiling).
Every public call is bounded as a whole by `deadline`. Bodies are read within bounds by the
auth flow (`registry_body`); errors and their parsers are in `registry_errors`.

The client keeps no per-call data on itself: what a call learns (its last transient error)
lives in a `CallScope` in that call's frame, so concurrent calls never see each other's.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import stamina
import trio

from gopher_updater.logs import get_logger
from gopher_updater.manifest import (
    ACCEPT,
    DOCKER_HUB_HOSTS,
    MEDIA_TYPES,
    Manifest,
    Outcome,
    RetagOutcome,
    normalize_repository,
    sha256_digest,
)
from gopher_updater.model import Digest, is_valid_tag
from gopher_updater.registry_auth import RegistryAuth
from gopher_updater.registry_body import MAX_MANIFEST_BYTES, loads_bounded
from gopher_updater.registry_errors import (
    DigestMismatch,
    ManifestUnknown,
    RegistryAuthError,
    RegistryError,
    RegistryRequestError,
    RegistryTLSError,
    RegistryUnavailable,
    error_for_response,
    parse_ratelimit,
)
from gopher_updater.registry_retry import Backoff, CallScope, RetryPolicy, bounded_call
from gopher_updater.safe_text import describe_cause, is_certificate_failure

log = get_logger(__name__)


def _check_tag(tag: str) -> None:
    if not is_valid_tag(tag):
        raise ValueError(f"invalid tag {tag[:140]!r}")


class RegistryClient:
    """One repository on one registry; use as `async with RegistryClient(...) as client`."""

    def __init__(
        self,
        *,
        base_url: str,
        repository: str,
        user: str,
        password: str,
        timeout: float,
        deadline: float = 60.0,
        dry_run: bool = False,
        overwrite_target: bool = False,
        on_request: Callable[[str, str], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
            raise ValueError("registry base_url must be http(s)://host[:port] without credentials")
        host = "registry-1.docker.io" if parts.hostname in DOCKER_HUB_HOSTS else parts.netloc
        self._base = f"{parts.scheme}://{host}{parts.path.rstrip('/')}"
        self.repository = normalize_repository(base_url, repository)
        self._timeout, self._deadline = timeout, deadline
        self.dry_run, self.overwrite_target = dry_run, overwrite_target
        self._on_request, self._retry = on_request, retry or RetryPolicy()
        self._auth = RegistryAuth(user=user, password=password, repository=self.repository)
        self.request_count = 0
        # trust_env (httpx's default) reads SSL_CERT_FILE / SSL_CERT_DIR: a private CA.
        self._http = httpx.AsyncClient(
            auth=self._auth,
            transport=transport,
            timeout=None,  # the trio cancel scope in _send_once is the one bound
            follow_redirects=False,
            headers={"Accept-Encoding": "identity"},  # manifests are hashed byte for byte
            event_hooks={"request": [self._count], "response": [self._noted]},
        )

    def __repr__(self) -> str:
        return f"RegistryClient({self._base}/{self.repository}, auth={self._auth!r})"

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    # -- public API -----------------------------------------------------------------------

    async def check_push_access(self) -> None:
        """Authenticate now; raise RegistryAuthError unless push looks granted.

        Token mode: the token server grants the intersection silently, so the JWT `access`
        claim is read (unverified). An opaque token is trusted: the PUT will tell. Basic and
        anonymous registries cannot tell us more than "these credentials log in".
        """
        with bounded_call(self._deadline, "check_push_access", None) as call:
            await self._request(call, None, "GET", f"{self._base}/v2/")
        granted = self._auth.granted_actions()
        bearer = self._auth.scheme_for(httpx.URL(self._base)) == "bearer"
        if bearer and granted is not None and "push" not in granted:
            have = ",".join(sorted(granted)) or "nothing"
            raise RegistryAuthError(
                f"credentials lack write access (token grants {have} on {self.repository})",
                operation=call.operation,
            )

    async def digest(self, tag: str) -> Digest | None:
        """The tag's manifest digest by HEAD (free on Docker Hub's pull limit); None if absent."""
        _check_tag(tag)
        with bounded_call(self._deadline, "digest", tag) as call:
            return await self._digest(call, tag)

    async def get(self, tag: str) -> Manifest:
        _check_tag(tag)
        with bounded_call(self._deadline, "get", tag) as call:
            return await self._get(call, tag)

    async def put(self, tag: str, manifest: Manifest) -> Digest:
        """PUT the exact bytes under `tag`; returns the digest (dry run: would-be digest)."""
        _check_tag(tag)
        with bounded_call(self._deadline, "put", tag) as call:
            return await self._put(call, tag, manifest)

    async def retag(self, source_tag: str, target_tag: str) -> RetagOutcome:
        """Point `target_tag` at the manifest `source_tag` names: at most 5 requests when warm.

        HEAD source, HEAD target (equal -> done), GET source, PUT target, HEAD target.
        """
        _check_tag(source_tag)
        _check_tag(target_tag)

        def result(outcome: Outcome, src: Digest | None, previous: Digest | None) -> RetagOutcome:
            return RetagOutcome(outcome, source_tag, target_tag, src, previous, self.dry_run)

        with bounded_call(self._deadline, "retag", f"{source_tag}->{target_tag}") as call:
            src = await self._digest(call, source_tag)
            if src is None:
                return result(Outcome.SOURCE_MISSING, None, None)
            previous = await self._digest(call, target_tag)
            if previous == src:
                return result(Outcome.ALREADY_PROMOTED, src, previous)
            if previous is not None and not self.overwrite_target:
                return result(Outcome.CONFLICT, src, previous)
            if self.dry_run:
                log.info("dry run: would retag", source_tag=source_tag, target_tag=target_tag,
                         digest=src.value)  # fmt: skip
                return result(Outcome.WOULD_PROMOTE, src, previous)
            try:
                manifest = await self._get(call, source_tag)
            except ManifestUnknown:
                return result(Outcome.SOURCE_MISSING, None, previous)
            if manifest.digest != src:
                log.warning("source moved during the retag", source_tag=source_tag,
                            was=src.value, now=manifest.digest.value)  # fmt: skip
                src = manifest.digest
            await self._put(call, target_tag, manifest)
            # The target now holds the bytes: its verifying HEAD is shielded like the PUT, so
            # a shutdown arriving here still ends in a known (and logged) outcome.
            now = await self._digest(call, target_tag, shield=True)
            if now != src:
                raise DigestMismatch(f"after the PUT the target is at {now}, not {src}",
                                     operation=call.operation, tag=target_tag)  # fmt: skip
            return result(Outcome.PROMOTED, src, previous)

    # -- operations (no deadline of their own) --------------------------------------------

    def _url(self, ref: str) -> str:
        return f"{self._base}/v2/{self.repository}/manifests/{ref}"

    async def _digest(self, call: CallScope, tag: str, *, shield: bool = False) -> Digest | None:
        try:
            response = await self._request(
                call, tag, "HEAD", self._url(tag), accept=True, shield=shield
            )
        except ManifestUnknown:
            return None
        header = response.headers.get("docker-content-digest", "")
        if header.startswith("sha256:"):
            try:
                return Digest(header)
            except ValueError:
                pass
        # no usable header: hash the bytes
        return (await self._get(call, tag, shield=shield)).digest

    async def _get(self, call: CallScope, tag: str, *, shield: bool = False) -> Manifest:
        response = await self._request(call, tag, "GET", self._url(tag), accept=True, shield=shield)
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in MEDIA_TYPES:
            doc = loads_bounded(response.content, max_bytes=MAX_MANIFEST_BYTES)
            declared = doc.get("mediaType") if isinstance(doc, dict) else None
            media_type = declared if isinstance(declared, str) else media_type
        if media_type not in MEDIA_TYPES:
            raise RegistryRequestError(f"unsupported manifest media type {media_type[:80]!r}",
                                       operation=call.operation, tag=tag)  # fmt: skip
        manifest = Manifest.from_bytes(response.content, media_type)
        self._check_digest(response, manifest.digest, call, tag)
        return manifest

    async def _put(self, call: CallScope, tag: str, manifest: Manifest) -> Digest:
        digest = sha256_digest(manifest.content)  # never trust a hand-built Manifest's digest
        if self.dry_run:
            log.info("dry run: would PUT", tag=tag, digest=digest.value)
            return digest
        headers = {"Content-Type": manifest.media_type}
        response = await self._request(
            call,
            tag,
            "PUT",
            self._url(tag),
            content=manifest.content,
            headers=headers,
            shield=True,
        )
        self._check_digest(response, digest, call, tag)
        return digest

    def _check_digest(
        self, response: httpx.Response, digest: Digest, call: CallScope, tag: str
    ) -> None:
        header = response.headers.get("docker-content-digest")
        if header and header.startswith("sha256:") and header != digest.value:
            raise DigestMismatch(f"registry says {header[:80]}, the bytes hash to {digest}",
                                 operation=call.operation, tag=tag)  # fmt: skip

    # -- HTTP: deadline, retries, one attempt, error mapping ------------------------------

    async def _request(
        self,
        call: CallScope,
        tag: str | None,
        method: str,
        url: str,
        *,
        accept: bool = False,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        shield: bool = False,
    ) -> httpx.Response:
        headers = {**(headers or {}), **({"Accept": ACCEPT} if accept else {})}
        retrying = stamina.retry_context(
            on=Backoff(self._retry, call), attempts=None, timeout=self._deadline
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._send_once(method, url, content, headers, shield)
                    if not response.is_success:
                        raise error_for_response(response, call.operation, tag, self._auth.redact)
                    return response
        except RegistryError as exc:
            raise exc.with_context(call.operation, tag) from exc.__cause__
        raise AssertionError("unreachable: stamina either returns or raises")

    async def _send_once(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: dict[str, str],
        shield: bool,
    ) -> httpx.Response:
        try:
            # A PUT on the wire (and the HEAD verifying it) is shielded from shutdown:
            # abandoning it halfway would leave the operator guessing what the target holds.
            # Its own timeout still bounds it; the waits between retries are not shielded.
            with trio.CancelScope(shield=shield), trio.fail_after(self._timeout):
                return await self._http.request(method, url, content=content, headers=headers)
            raise AssertionError("unreachable: nothing cancels the shield scope itself")
        except trio.TooSlowError:
            self._note(method, "error")
            raise RegistryUnavailable(f"no answer within {self._timeout:g}s") from None
        except httpx.TransportError as exc:
            self._note(method, "error")
            cause = self._auth.redact(describe_cause(exc))[:200]
            if is_certificate_failure(exc):
                raise RegistryTLSError(f"connection failed: {cause}") from exc
            raise RegistryUnavailable(f"connection failed: {cause}") from exc
        except httpx.HTTPError as exc:  # an answer httpx itself refuses (bad header, ...)
            self._note(method, "error")
            cause = self._auth.redact(describe_cause(exc))[:200]
            raise RegistryRequestError(f"unusable answer: {cause}") from exc

    # -- hooks ----------------------------------------------------------------------------

    def _note(self, method: str, status: str) -> None:
        if self._on_request is not None:
            self._on_request(method, status)

    async def _count(self, request: httpx.Request) -> None:
        self.request_count += 1

    async def _noted(self, response: httpx.Response) -> None:
        self._note(response.request.method, str(response.status_code))
        remaining = parse_ratelimit(response.headers.get("ratelimit-remaining"))
        if remaining is not None:
            limit = parse_ratelimit(response.headers.get("ratelimit-limit"))
            log.debug("registry rate limit", remaining=remaining[0],
                      limit=limit[0] if limit else None, window=remaining[1])  # fmt: skip

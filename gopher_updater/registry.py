"""Registry client: read, write and retag manifests of one repository over the distribution API.

A retag copies only the manifest: GET the source tag's exact bytes and PUT them under the
target tag, so the digest (and every signature keyed by it) is preserved. HEADs come first
because they are free on Docker Hub's pull limit and make the operation idempotent.

Every HTTP exchange is bounded by `timeout` (a trio cancel scope around the whole request,
body included) and retried by stamina on connection errors, timeouts, 408/429/5xx, waiting
what `Retry-After` (or Docker Hub's exhausted rate-limit window) asks when it says so. Every
public call is bounded as a whole by `deadline`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import attrs
import httpx
import stamina
import trio

from gopher_updater.manifest import ACCEPT as ACCEPT
from gopher_updater.manifest import DOCKER_HUB_HOSTS
from gopher_updater.manifest import MEDIA_TYPES as MEDIA_TYPES
from gopher_updater.manifest import Manifest as Manifest
from gopher_updater.manifest import Outcome as Outcome
from gopher_updater.manifest import RetagOutcome as RetagOutcome
from gopher_updater.manifest import normalize_repository as normalize_repository
from gopher_updater.manifest import sha256_digest as sha256_digest
from gopher_updater.model import Digest, is_valid_tag
from gopher_updater.registry_auth import DigestMismatch as DigestMismatch
from gopher_updater.registry_auth import ManifestUnknown as ManifestUnknown
from gopher_updater.registry_auth import RegistryAuth, error_for_response
from gopher_updater.registry_auth import RegistryAuthError as RegistryAuthError
from gopher_updater.registry_auth import RegistryError as RegistryError
from gopher_updater.registry_auth import RegistryRequestError as RegistryRequestError
from gopher_updater.registry_auth import RegistryUnavailable as RegistryUnavailable

log = logging.getLogger(__name__)


@attrs.frozen
class RetryPolicy:
    """Exponential backoff with additive jitter (stamina) when the registry gives no Retry-After."""

    wait_initial: float = 0.5
    wait_max: float = 10.0
    wait_jitter: float = 0.5


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
        self._last_transient: RegistryError | None = None
        self.request_count = 0
        self._http = httpx.AsyncClient(
            auth=self._auth,
            transport=transport,
            timeout=None,  # the trio cancel scope in _send_once is the one bound
            follow_redirects=False,
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
        op = "check_push_access"
        with self._bounded(op, None):
            await self._request(op, None, "GET", f"{self._base}/v2/")
        granted = self._auth.granted_actions()
        bearer = self._auth.scheme_for(httpx.URL(self._base)) == "bearer"
        if bearer and granted is not None and "push" not in granted:
            have = ",".join(sorted(granted)) or "nothing"
            raise RegistryAuthError(
                f"credentials lack write access (token grants {have} on {self.repository})",
                operation=op,
            )

    async def digest(self, tag: str) -> Digest | None:
        """The tag's manifest digest by HEAD (free on Docker Hub's pull limit); None if absent."""
        _check_tag(tag)
        with self._bounded("digest", tag):
            return await self._digest("digest", tag)

    async def get(self, tag: str) -> Manifest:
        _check_tag(tag)
        with self._bounded("get", tag):
            return await self._get("get", tag)

    async def put(self, tag: str, manifest: Manifest) -> Digest:
        """PUT the exact bytes under `tag`; returns the digest (dry run: would-be digest)."""
        _check_tag(tag)
        with self._bounded("put", tag):
            return await self._put("put", tag, manifest)

    async def retag(self, source_tag: str, target_tag: str) -> RetagOutcome:
        """Point `target_tag` at the manifest `source_tag` names: at most 5 requests when warm.

        HEAD source, HEAD target (equal -> done), GET source, PUT target, HEAD target.
        """
        _check_tag(source_tag)
        _check_tag(target_tag)
        op = "retag"

        def result(outcome: Outcome, src: Digest | None, previous: Digest | None) -> RetagOutcome:
            return RetagOutcome(outcome, source_tag, target_tag, src, previous, self.dry_run)

        with self._bounded(op, f"{source_tag}->{target_tag}"):
            src = await self._digest(op, source_tag)
            if src is None:
                return result(Outcome.SOURCE_MISSING, None, None)
            previous = await self._digest(op, target_tag)
            if previous == src:
                return result(Outcome.ALREADY_PROMOTED, src, previous)
            if previous is not None and not self.overwrite_target:
                return result(Outcome.CONFLICT, src, previous)
            if self.dry_run:
                log.info("dry run: would retag %s -> %s (%s)", source_tag, target_tag, src.short)
                return result(Outcome.WOULD_PROMOTE, src, previous)
            try:
                manifest = await self._get(op, source_tag)
            except ManifestUnknown:
                return result(Outcome.SOURCE_MISSING, None, previous)
            if manifest.digest != src:
                log.warning("%s moved during the retag: %s -> %s", source_tag, src, manifest.digest)
                src = manifest.digest
            await self._put(op, target_tag, manifest)
            now = await self._digest(op, target_tag)
            if now != src:
                raise DigestMismatch(
                    f"after the PUT the target is at {now}, not {src}", operation=op, tag=target_tag
                )
            return result(Outcome.PROMOTED, src, previous)

    # -- operations (no deadline of their own) --------------------------------------------

    def _url(self, ref: str) -> str:
        return f"{self._base}/v2/{self.repository}/manifests/{ref}"

    async def _digest(self, op: str, tag: str) -> Digest | None:
        try:
            response = await self._request(op, tag, "HEAD", self._url(tag), accept=True)
        except ManifestUnknown:
            return None
        header = response.headers.get("docker-content-digest", "")
        if header.startswith("sha256:"):
            try:
                return Digest(header)
            except ValueError:
                pass
        return (await self._get(op, tag)).digest  # no usable header: hash the bytes

    async def _get(self, op: str, tag: str) -> Manifest:
        response = await self._request(op, tag, "GET", self._url(tag), accept=True)
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in MEDIA_TYPES:
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                media_type = str(json.loads(response.content).get("mediaType", media_type))
        if media_type not in MEDIA_TYPES:
            raise RegistryRequestError(
                f"unsupported manifest media type {media_type[:80]!r}", operation=op, tag=tag
            )
        manifest = Manifest.from_bytes(response.content, media_type)
        self._check_digest(response, manifest.digest, op, tag)
        return manifest

    async def _put(self, op: str, tag: str, manifest: Manifest) -> Digest:
        digest = sha256_digest(manifest.content)  # never trust a hand-built Manifest's digest
        if self.dry_run:
            log.info("dry run: would PUT %s as %s", digest.short, tag)
            return digest
        headers = {"Content-Type": manifest.media_type}
        response = await self._request(
            op, tag, "PUT", self._url(tag), content=manifest.content, headers=headers
        )
        self._check_digest(response, digest, op, tag)
        return digest

    def _check_digest(self, response: httpx.Response, digest: Digest, op: str, tag: str) -> None:
        header = response.headers.get("docker-content-digest")
        if header and header.startswith("sha256:") and header != digest.value:
            raise DigestMismatch(
                f"registry says {header[:80]}, the bytes hash to {digest}", operation=op, tag=tag
            )

    # -- HTTP: deadline, retries, one attempt, error mapping ------------------------------

    @contextlib.contextmanager
    def _bounded(self, op: str, tag: str | None) -> Iterator[None]:
        self._last_transient = None
        try:
            with trio.fail_after(self._deadline):
                yield
        except trio.TooSlowError:
            last = self._last_transient or RegistryError("")
            raise RegistryUnavailable(
                f"gave up at the {self._deadline:g}s deadline"
                + (f"; last error: {last.message}" if last.message else ""),
                operation=op, tag=tag, status=last.status, code=last.code,
                retry_after=last.retry_after,
            ) from None  # fmt: skip

    def _backoff(self, exc: Exception) -> bool | float:
        """stamina hook: retry transient errors; wait exactly what Retry-After asks."""
        if not isinstance(exc, RegistryError) or not exc.retryable:
            return False
        self._last_transient = exc
        if exc.retry_after is None:
            return True
        remaining = trio.current_effective_deadline() - trio.current_time()
        if exc.retry_after > remaining:
            log.warning(
                "registry asks to wait %.1fs, beyond the deadline: giving up", exc.retry_after
            )
            return False
        return exc.retry_after

    async def _request(
        self,
        op: str,
        tag: str | None,
        method: str,
        url: str,
        *,
        accept: bool = False,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {**(headers or {}), **({"Accept": ACCEPT} if accept else {})}
        retrying = stamina.retry_context(
            on=self._backoff,
            attempts=None,
            timeout=self._deadline,
            wait_initial=self._retry.wait_initial,
            wait_max=self._retry.wait_max,
            wait_jitter=self._retry.wait_jitter,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._send_once(method, url, content, headers)
                    if not response.is_success:
                        raise error_for_response(response, op, tag, self._auth.redact)
                    return response
        except RegistryError as exc:
            exc.with_context(op, tag)
            raise
        raise AssertionError("unreachable: stamina either returns or raises")

    async def _send_once(
        self, method: str, url: str, content: bytes | None, headers: dict[str, str]
    ) -> httpx.Response:
        try:
            # A PUT on the wire is shielded from shutdown: abandoning it halfway would leave
            # the operator guessing what the target holds. Its own timeout still bounds it.
            with trio.CancelScope(shield=method == "PUT"), trio.fail_after(self._timeout):
                return await self._http.request(method, url, content=content, headers=headers)
            raise AssertionError("unreachable: nothing cancels the shield scope itself")
        except trio.TooSlowError:
            self._note(method, "error")
            raise RegistryUnavailable(
                f"no answer within {self._timeout:g}s", retryable=True
            ) from None
        except httpx.TransportError as exc:
            self._note(method, "error")
            raise RegistryUnavailable(
                f"connection failed: {type(exc).__name__}: {self._auth.redact(str(exc))[:200]}",
                retryable=True,
            ) from exc

    # -- hooks ----------------------------------------------------------------------------

    def _note(self, method: str, status: str) -> None:
        if self._on_request is not None:
            self._on_request(method, status)

    async def _count(self, request: httpx.Request) -> None:
        self.request_count += 1

    async def _noted(self, response: httpx.Response) -> None:
        self._note(response.request.method, str(response.status_code))
        if (remaining := response.headers.get("ratelimit-remaining")) is not None:
            log.debug(
                "registry rate limit: remaining %s of %s",
                remaining,
                response.headers.get("ratelimit-limit"),
            )

"""The webhook channel: one JSON POST per event, HMAC-signed like a Flux `generic-hmac` Receiver.

The body is serialised once (`notify.encode_event`) and those exact bytes are both signed
and sent: `httpx`'s `json=` would re-serialise and the signature would no longer match.
Redirects are not followed, so the body and signature never reach a host the operator did
not name. The URL may carry a credential in its path or query (many chat webhooks do), so it
is only ever shown as scheme and host; errors are reduced to a status code or an exception
class name, because httpx's own messages can embed the request URL.
"""

from __future__ import annotations

from types import TracebackType
from urllib.parse import urlsplit

import attrs
import httpx

from gopher_updater import __version__
from gopher_updater.flux_receiver import signature
from gopher_updater.notify import NotifyConfigError, NotifyEvent, encode_event
from gopher_updater.urls import MAX_URL_LENGTH, redact_url

#: Statuses worth another try: the service is busy, rate-limiting or broken for now. Every
#: other 4xx says the request itself is wrong, and sending it again can't fix that.
_RETRYABLE_4XX = frozenset({408, 429})


@attrs.frozen
class Attempt:
    """What one try at delivering one event came to; `detail` is safe to log and show."""

    ok: bool
    retryable: bool
    detail: str


def check_webhook_url(url: str, variable: str = "NOTIFY_WEBHOOK_URL") -> str:
    """Accept an absolute http(s) URL with a host; the error names the scheme, not the URL.

    Unlike a base URL (`urls.check_url`) a webhook may carry a query (some services put
    their token there), so only the length and character limits are shared.
    """
    if len(url.strip()) > MAX_URL_LENGTH:
        raise NotifyConfigError(variable, f"longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url.strip()):
        raise NotifyConfigError(variable, "contains whitespace or control characters")
    try:
        parts = urlsplit(url.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises on a non-numeric or out-of-range port
    except ValueError:
        ok = False
        parts = urlsplit("")
    if not ok:
        scheme = parts.scheme[:16] or "none"
        raise NotifyConfigError(
            variable, f"expected an http(s) URL with a host (scheme given: {scheme!r})"
        )
    return url.strip()


def classify_status(status: int) -> Attempt:
    if 200 <= status < 300:
        return Attempt(ok=True, retryable=False, detail=f"HTTP {status}")
    retryable = status >= 500 or status in _RETRYABLE_4XX
    return Attempt(ok=False, retryable=retryable, detail=f"HTTP {status}")


class WebhookChannel:
    """POSTs each event's JSON to one URL; used as an async context manager for its client."""

    kind = "webhook"

    def __init__(
        self,
        url: str,
        token: bytes | None = None,
        *,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url = url
        self._token = token
        self._timeout = timeout
        self._client = client
        self._own_client = client is None
        self.name = "webhook"
        self.target = redact_url(url)  # scheme://host[:port]: the path may be the secret

    def __repr__(self) -> str:
        return f"WebhookChannel({self.target!r}, signed={self._token is not None})"

    async def __aenter__(self) -> WebhookChannel:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout), follow_redirects=False
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def request_parts(self, event: NotifyEvent) -> tuple[bytes, dict[str, str]]:
        """Body and headers for one event (public so tests and tools can check a signature)."""
        body = encode_event(event)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"gopher-updater/{__version__}",
        }
        if self._token is not None:
            headers["X-Signature"] = signature(self._token, body)
        return body, headers

    async def send(self, event: NotifyEvent) -> Attempt:
        if self._client is None:
            raise RuntimeError("WebhookChannel used outside `async with`")
        body, headers = self.request_parts(event)
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Attempt(ok=False, retryable=True, detail="timeout")
        except httpx.TransportError as exc:
            return Attempt(ok=False, retryable=True, detail=type(exc).__name__)
        return classify_status(response.status_code)

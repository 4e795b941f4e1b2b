"""Flux Receiver endpoints: parsing the configured URLs, signing requests, reading answers.

A Receiver's webhook path is `/hook/` + sha256(token + name + namespace). For the `generic`
type the path is the whole credential, and even for `generic-hmac` it names the Secret's
hash; so the URL is held in a `ReceiverURL` whose repr/str show `scheme://host[:port]` only,
and every error raised here is worded from that origin, never from the URL itself.

The HMAC token is kept as bytes, exactly as read: the notification-controller keys the HMAC
with the Secret's value verbatim, so a stripped trailing newline would make every signature
wrong (400). `token_warning` lets start-up say so instead of guessing.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from urllib.parse import urlsplit

import attrs

from gopher_updater.secret import Hidden

#: A webhook URL is scheme://host/hook/<64 hex>; anything near this long is not one.
MAX_URL_LENGTH = 2048
#: Characters a URL may hold as written in an env var or file (no spaces, no controls).
_URL_CHARS = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")


@attrs.frozen(auto_exc=True)
class ReceiverConfigError(ValueError):
    """A receiver URL or token that cannot work. Never carries the URL's path or the token.

    `item` names the entry (`receiver URL 2`, `receiver token`), `origin` is the entry's
    `scheme://host[:port]` when it could be read safely, `reason` says what is wrong.
    """

    item: str
    reason: str
    origin: str | None = None

    def __str__(self) -> str:
        where = f" ({self.origin})" if self.origin else ""
        return f"{self.item}{where}: {self.reason}"


class ReceiverURL:
    """A Receiver webhook URL: a credential that prints as its origin only."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        #: `scheme://host[:port]`: the only part of the URL ever shown.
        self.origin = origin

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"ReceiverURL('{self.origin}/********')"

    def __str__(self) -> str:
        return self.origin

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReceiverURL) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class ReceiverToken(Hidden[bytes]):
    """The generic-hmac key, byte-exact: Flux uses the Secret's value verbatim."""

    __slots__ = ()


@attrs.frozen
class Receiver:
    """One Flux Receiver to nudge: its URL, its HMAC key (None: `generic`), its position.

    `index` is the 1-based position in FLUX_RECEIVER_URL: two receivers usually share one
    origin (the in-cluster webhook-receiver Service), so logs and /status tell them apart by
    index rather than by the secret path.
    """

    url: ReceiverURL
    token: ReceiverToken | None = attrs.field(default=None, repr=False)
    index: int = 1

    @property
    def origin(self) -> str:
        return self.url.origin

    @property
    def signed(self) -> bool:
        return self.token is not None


def _origin(scheme: str, host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + (f":{port}" if port is not None else "")


def parse_receiver_url(value: str, *, index: int = 1) -> ReceiverURL:
    """Validate one webhook URL; raise ReceiverConfigError worded without its secret parts."""
    item = f"receiver URL {index}"
    if not value:
        raise ReceiverConfigError(item, "empty")
    if len(value) > MAX_URL_LENGTH:
        raise ReceiverConfigError(item, f"longer than {MAX_URL_LENGTH} characters")
    if not set(value) <= _URL_CHARS:
        raise ReceiverConfigError(item, "holds spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(value)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ReceiverConfigError(item, "not a URL, or its port is not 1-65535") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ReceiverConfigError(item, "scheme must be http or https")
    if not host:
        raise ReceiverConfigError(item, "no host")
    origin = _origin(scheme, host, port)
    if "@" in parts.netloc:
        # The userinfo is a credential of its own; the origin above leaves it out.
        raise ReceiverConfigError(item, "must not hold user:password@", origin)
    if port == 0:
        raise ReceiverConfigError(item, "port must be 1-65535", origin)
    if parts.path in ("", "/"):
        raise ReceiverConfigError(item, "no webhook path (expected /hook/<sha256>)", origin)
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        # The notification-controller matches path + query exactly: any query misses (404).
        raise ReceiverConfigError(item, "must not hold a query string or fragment", origin)
    return ReceiverURL(value, origin)


def parse_receivers(urls: str, token: bytes | None) -> tuple[Receiver, ...]:
    """FLUX_RECEIVER_URL (comma-separated) and the optional token → the receivers to nudge.

    An empty or blank `urls` means no receiver. An empty token is refused: it would sign
    with an empty key, which no Secret holds by intent.
    """
    if token is not None and not token:
        raise ReceiverConfigError("receiver token", "empty (unset it to use the generic type)")
    if not urls.strip():
        return ()
    key = ReceiverToken(token) if token is not None else None
    receivers: list[Receiver] = []
    seen: set[ReceiverURL] = set()
    for index, raw in enumerate(urls.split(","), start=1):
        url = parse_receiver_url(raw.strip(), index=index)
        if url in seen:
            raise ReceiverConfigError(f"receiver URL {index}", "listed twice", url.origin)
        seen.add(url)
        receivers.append(Receiver(url=url, token=key, index=index))
    return tuple(receivers)


def token_warning(token: bytes | None) -> str | None:
    """A start-up warning for a token that is probably not what the Secret holds, else None."""
    if token is not None and token.endswith((b"\n", b"\r")):
        return (
            "FLUX_RECEIVER_TOKEN ends in a newline; it is used byte for byte, as the "
            "notification-controller uses the Secret's value: if the Secret's token has no "
            "newline, every nudge will be rejected (400)"
        )
    return None


def signature(token: ReceiverToken | bytes, body: bytes) -> str:
    """`X-Signature` value for generic-hmac: `sha256=<hex HMAC of the exact body bytes>`."""
    key = token.reveal() if isinstance(token, Hidden) else token
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def request_headers(receiver: Receiver, body: bytes) -> dict[str, str]:
    """Headers for one POST of `body` (the bytes that will be sent, signed as they are)."""
    headers = {"Content-Type": "application/json"}
    if receiver.token is not None:
        headers["X-Signature"] = signature(receiver.token, body)
    return headers


#: Statuses worth asking again: no Receiver at that path *yet*, or Flux/ingress busy.
RETRYABLE = frozenset({404, 408, 425, 429})


def classify(status: int | None) -> str:
    """`accepted`, `retry` or `rejected` for an HTTP status (None: no answer at all)."""
    if status is None or status in RETRYABLE or 500 <= status <= 599:
        return "retry"
    if 200 <= status <= 299:
        return "accepted"
    return "rejected"


def rejection_hint(status: int | None) -> str:
    """What to check after a `rejected` answer; logged once, with the receiver's origin."""
    if status == 400:
        return (
            "signature rejected or the Receiver cannot read its Secret: FLUX_RECEIVER_TOKEN "
            "must equal the Secret's token byte for byte, and the Receiver be generic-hmac"
        )
    if status == 413:
        return "body too large for the notification-controller (a bug: please report it)"
    return "not an answer a Flux Receiver gives: check the URL (ingress auth, redirect?)"

"""URLs and hosts from the operator: validated once at start-up, redacted whenever shown.

Every base URL variable (`RPC_URL`, `REGISTRY_URL`) goes through `check_url`, so "is this a
URL we can use?" has one answer: http(s) only, a host, a port in 1-65535, at most
`MAX_URL_LENGTH` characters, and a policy for userinfo (`user:pass@`). Webhook URLs, whose path
or query is itself the secret, have their own parsers (`flux_receiver`, `notify_webhook`) that
share `MAX_URL_LENGTH`. Credentials in a URL end up in logs, `/status` and error messages, so
a variable either refuses them (the registry has its own credential variables) or accepts them
and splits them off into a `Secret` (LCDs behind Basic auth exist), after which the URL the
rest of the daemon sees has none. `redact_url` is what every log line, page or message shows.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal
from urllib.parse import unquote, urlsplit

import attrs
import httpx

from gopher_updater.secret import Secret

MAX_URL_LENGTH = 2048
MAX_HOSTNAME_LENGTH = 253
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
#: Outside RFC 1123, but Docker Compose service names and some internal DNS use `_`.
_LENIENT_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")

Userinfo = Literal["refuse", "split"]


@attrs.frozen
class CheckedUrl:
    """A usable base URL (no userinfo, no trailing slash) and the credentials split off it."""

    url: str
    auth: tuple[str, Secret] | None = None


@attrs.frozen
class LcdEndpoint:
    """One LCD base URL of `RPC_URL`: the URL without userinfo, and its Basic-auth credentials.

    `label` (`scheme://host:port`, the port always written) is what metrics, logs and pages
    name the endpoint by; it never holds credentials or the path.
    """

    url: str
    auth: tuple[str, Secret] | None = attrs.field(default=None, repr=False)

    @property
    def label(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        shown = f"[{host}]" if ":" in host else host
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.scheme}://{shown}:{port}"

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @classmethod
    def from_checked(cls, checked: CheckedUrl) -> LcdEndpoint:
        return cls(url=checked.url, auth=checked.auth)


def check_host(value: str, *, lenient: bool = False) -> str:
    """An IP address or an RFC 1123 hostname (`lenient`: `_` allowed); raise ValueError.

    IPv6 may be written bracketed (`[::1]`); the brackets are removed.
    """
    host = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host  # a fully qualified name's root dot
    label = _LENIENT_LABEL if lenient else _LABEL
    if not name or len(name) > MAX_HOSTNAME_LENGTH:
        raise ValueError(f"expected an IP address or a hostname of 1-{MAX_HOSTNAME_LENGTH} chars")
    labels = name.split(".")
    if not all(label.fullmatch(part) for part in labels):
        raise ValueError("expected an IP address or a hostname (letters, digits, '-', '.')")
    if all(part.isdigit() for part in labels):
        raise ValueError("expected an IP address or a hostname (all-numeric is neither)")
    return host


def check_url(value: str, *, userinfo: Userinfo = "refuse") -> CheckedUrl:
    """Validate an http(s) base URL; raise ValueError whose message never quotes `value`.

    userinfo="refuse": `user:pass@` is an error. userinfo="split": the credentials are
    returned as `auth` (user, Secret) and removed from the URL.
    """
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        raise ValueError("contains whitespace or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        raise ValueError("not a valid URL (bad brackets or port; ports are 1-65535)") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("scheme must be http:// or https://")
    host = parts.hostname
    if not host:
        raise ValueError("no host")
    if port == 0:
        raise ValueError("port must be 1-65535")
    if parts.query or parts.fragment:
        raise ValueError("a base URL takes no ?query or #fragment")
    try:
        if ":" in host:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        else:
            check_host(host.encode("idna").decode("ascii"), lenient=True)
    except (ValueError, UnicodeError):
        raise ValueError("the host is not a valid IP address or hostname") from None
    if "@" in parts.path:
        # Also what an unencoded '/' in a password looks like: never guess, never show it.
        raise ValueError("'@' outside user:password@ (percent-encode '/', '?', '#' in them)")
    netloc = parts.netloc.rpartition("@")[2]
    auth = None
    if "@" in parts.netloc:
        if userinfo == "refuse":
            raise ValueError("must not contain credentials (user:password@)")
        auth = (unquote(parts.username or ""), Secret(unquote(parts.password or "")))
    clean = f"{parts.scheme}://{netloc}{parts.path}".rstrip("/")
    try:
        httpx.URL(clean)  # what the clients will do with it; must not fail later
    except (httpx.InvalidURL, ValueError, UnicodeError):
        raise ValueError("not a URL the HTTP client accepts") from None
    return CheckedUrl(url=clean, auth=auth)


def redact_url(url: str, *, keep_path: bool = False) -> str:
    """`scheme://host[:port]` for logs, pages and messages: userinfo masked as `***@`.

    The query and fragment are always dropped, and the path unless `keep_path` (webhook and
    provider URLs often carry their token in the path). Anything unparseable becomes
    `<invalid URL>` rather than being echoed. An `@` after the host is taken as credentials
    whose unencoded `/`, `?` or `#` fooled the parser: everything before the last `@` is
    masked then, so a mistyped URL cannot leak half a password.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not parts.netloc:
        return "<invalid URL>"
    if "@" in parts.path + parts.query + parts.fragment:
        after = url.rpartition("@")[2]
        return f"{parts.scheme}://***@{re.split(r'[/?#]', after, maxsplit=1)[0]}"
    _, at, hostport = parts.netloc.rpartition("@")
    masked = "***@" if at else ""
    path = parts.path if keep_path else ""
    return f"{parts.scheme}://{masked}{hostport}{path}"

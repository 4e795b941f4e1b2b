"""A small Docker token server (token auth spec) for the real registry in token mode.

distribution never calls the token server; it only verifies the JWS a client brings. So this
server just has to mint tokens the way Docker Hub's does: ES256 compact JWS with an `x5c`
chain the registry trusts through `auth.token.rootcertbundle`, and the *intersection* of the
requested and permitted actions (never an error for missing rights; the registry refuses the
operation later with 401 insufficient_scope). That behaviour, plus the knobs below, is what
the registry client's auth code is tested against.

Runs in a daemon thread (`http.server`), so it works under pytest, trio tests and the demo
alike. cryptography is imported here and nowhere else in the rig: only token mode needs it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from gopher_updater.testing.server_thread import ServerThread

DEFAULT_TTL = 300
#: distribution accepts `exp` up to 60 s in the past; 120 s is safely expired.
EXPIRED_BY = 120


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_kid(public_key: ec.EllipticCurvePublicKey) -> str:
    """distribution 2.8.2's key id: SHA-256 of the DER SPKI, 30 bytes, base32, 12x4 groups.

    The registry tries `x5c` first, so this is belt and braces (and what Docker Hub sends).
    """
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b32 = base64.b32encode(hashlib.sha256(spki).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, 48, 4))


@attrs.frozen
class SigningKey:
    """An ES256 key and the self-signed certificate the registry trusts (its own root)."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def generate(cls) -> SigningKey:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gopher-updater test token")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key=key, cert=cert)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def sign_jws(self, claims: Mapping[str, Any]) -> str:
        """Compact JWS, ES256: the signature is raw r||s (64 bytes), not DER."""
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "kid": libtrust_kid(self.key.public_key()),
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@attrs.frozen
class Grant:
    """One entry of the JWT `access` claim."""

    type: str
    name: str
    actions: tuple[str, ...]

    def claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


@attrs.frozen
class TokenRequest:
    """What the token server saw: who (None = anonymous or rejected), which scopes, answer."""

    user: str | None
    scopes: tuple[str, ...]
    status: int


def parse_scopes(values: Sequence[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """`type:name:actions` items, repeatable and space separated.

    The name may itself hold a `:` (a `host:port/` prefix), so the type is split at the first
    colon and the actions at the last one. Malformed items are ignored, as Docker's server does.
    """
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for value in values:
        for item in value.split():
            kind, sep1, rest = item.partition(":")
            name, sep2, actions = rest.rpartition(":")
            if not (sep1 and sep2 and kind and name):
                continue
            out.append((kind, name, tuple(a for a in actions.split(",") if a)))
    return out


@attrs.define
class _User:
    password: str = attrs.field(repr=False)
    actions: frozenset[str]


class TokenServer:
    """Docker token endpoint on 127.0.0.1:0, in a background thread.

    Knobs (plain attributes, read per request; `reset()` restores them):
    - `token_ttl`: `expires_in` and `exp - iat` (seconds).
    - `omit_expires_in`: leave `expires_in` out (clients must then assume 60 s).
    - `token_only`: answer only `token` (Docker Hub style), no `access_token`.
    - `issue_expired`: the next N tokens carry an `exp` 120 s in the past while `expires_in`
      still says `token_ttl`, so a client caches them and the registry answers
      401 `error="invalid_token"`.
    - `deny_insufficient`: GHCR style, answer 403 DENIED when the user lacks a requested action
      instead of granting the intersection.
    `requests` counts every GET on the realm (any outcome); `log` records each one.
    """

    def __init__(
        self,
        *,
        service: str,
        issuer: str,
        users: Mapping[str, tuple[str, Sequence[str]]],
        signing_key: SigningKey | None = None,
    ) -> None:
        self.service = service
        self.issuer = issuer
        self.signing_key = signing_key or SigningKey.generate()
        self._users = {
            name: _User(password=pw, actions=frozenset(actions))
            for name, (pw, actions) in users.items()
        }
        self._lock = threading.Lock()
        self.token_ttl = DEFAULT_TTL
        self.omit_expires_in = False
        self.token_only = False
        self.issue_expired = 0
        self.deny_insufficient = False
        self.requests = 0
        self.log: list[TokenRequest] = []
        self._serving: ServerThread | None = None
        self.url = ""

    def __repr__(self) -> str:
        return f"TokenServer(url={self.url!r}, requests={self.requests})"

    def reset(self) -> None:
        """Restore default knobs and clear the counter and log (tests share one server)."""
        with self._lock:
            self.token_ttl = DEFAULT_TTL
            self.omit_expires_in = False
            self.token_only = False
            self.issue_expired = 0
            self.deny_insufficient = False
            self.requests = 0
            self.log.clear()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes (see the proxy)

            def do_GET(self) -> None:
                owner._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._serving = ServerThread(Handler)
        self.url = f"http://127.0.0.1:{self._serving.port}/token"

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.stop()
            self._serving = None

    def __enter__(self) -> TokenServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- tokens ----------------------------------------------------------------------------

    def mint(
        self,
        subject: str,
        grants: Sequence[Grant],
        *,
        ttl: int | None = None,
        now: float | None = None,
    ) -> str:
        """Sign a token directly, without HTTP and without counting a request.

        The rig's own helpers (push, HEAD) use this so tests that count token requests see
        only their client's. `now` lets a test mint an already expired token.
        """
        issued = int(time.time() if now is None else now)
        life = self.token_ttl if ttl is None else ttl
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": issued + life,
            "nbf": issued,
            "iat": issued,
            "jti": secrets.token_hex(16),
            "access": [g.claim() for g in grants],
        }
        return self.signing_key.sign_jws(claims)

    def _authenticate(self, header: str | None) -> tuple[bool, str | None]:
        """(ok, user): no header is anonymous; a bad or malformed Basic is not ok."""
        if header is None:
            return True, None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            name, sep, password = (
                base64.b64decode(value.strip(), validate=True).decode().partition(":")
            )
        except (ValueError, UnicodeDecodeError):
            return False, None
        user = self._users.get(name)
        if not sep or user is None:
            return False, None
        if not hmac.compare_digest(user.password.encode(), password.encode()):
            return False, None
        return True, name

    def _handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(req.path)
        query = urllib.parse.parse_qs(url.query)
        scope_values = query.get("scope", [])
        with self._lock:
            self.requests += 1
        if url.path != "/token":
            self._answer(req, 404, {"errors": [{"code": "NOT_FOUND", "message": "no such path"}]})
            self._record(None, scope_values, 404)
            return
        if query.get("service", [""])[0] != self.service:
            self._answer(
                req, 400, {"errors": [{"code": "INVALID_REQUEST", "message": "unknown service"}]}
            )
            self._record(None, scope_values, 400)
            return
        ok, user = self._authenticate(req.headers.get("Authorization"))
        if not ok:
            self._answer(
                req,
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]},
                {"WWW-Authenticate": 'Basic realm="gopher-test-token"'},
            )
            self._record(None, scope_values, 401)
            return
        allowed = self._users[user].actions if user is not None else frozenset()
        grants: list[Grant] = []
        for kind, name, wanted in parse_scopes(scope_values):
            granted = tuple(a for a in wanted if kind == "repository" and a in allowed)
            if self.deny_insufficient and len(granted) < len(wanted):
                self._answer(
                    req,
                    403,
                    {"errors": [{"code": "DENIED", "message": "requested access is denied"}]},
                )
                self._record(user, scope_values, 403)
                return
            grants.append(Grant(kind, name, granted))
        with self._lock:
            expired = self.issue_expired > 0
            if expired:
                self.issue_expired -= 1
        now = time.time()
        ttl = self.token_ttl
        if expired:
            token = self.mint(user or "", grants, ttl=ttl, now=now - ttl - EXPIRED_BY)
        else:
            token = self.mint(user or "", grants, ttl=ttl, now=now)
        body: dict[str, Any] = {"token": token}
        if not self.token_only:
            body["access_token"] = token
        if not self.omit_expires_in:
            body["expires_in"] = ttl
        body["issued_at"] = dt.datetime.fromtimestamp(int(now), dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        self._answer(req, 200, body)
        self._record(user, scope_values, 200)

    def _record(self, user: str | None, scopes: Sequence[str], status: int) -> None:
        with self._lock:
            self.log.append(TokenRequest(user=user, scopes=tuple(scopes), status=status))

    @staticmethod
    def _answer(
        req: http.server.BaseHTTPRequestHandler,
        status: int,
        body: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        req.send_response_only(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            req.send_header(key, value)
        req.end_headers()
        req.wfile.write(data)


def write_cert_bundle(signing_key: SigningKey, path: Path) -> Path:
    path.write_bytes(signing_key.cert_pem())
    return path

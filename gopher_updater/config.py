"""Configuration: environment variables only, validated all at once.

environ-config declares the variables (names, defaults, help text for `--help`) and reads
them as raw strings. Converting and validating happens here rather than in environ-config's
converters because an operator fixing a Deployment wants *every* problem in one message,
while attrs converters stop at the first exception; and because environ-config's own boolean
parsing silently maps any unknown string to False, where a typo in `DRY_RUN` must fail loudly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import environ

from gopher_updater.duration import DurationError, parse_go_duration
from gopher_updater.model import REPOSITORY_RE

_PREFIX_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}")
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")


@environ.config(prefix="")
class RawEnv:
    """The 17 variables as the operator wrote them (strings; None = unset)."""

    rpc_url = environ.var(
        "http://localhost:1317", name="RPC_URL", help="Cosmos LCD (REST) base URL"
    )
    dockerhub_user = environ.var(None, name="DOCKERHUB_USER", help="registry user (Docker ID)")
    dockerhub_password = environ.var(
        None, name="DOCKERHUB_PASSWORD", help="password or access token (Read & Write)"
    )
    dockerhub_password_file = environ.var(
        None, name="DOCKERHUB_PASSWORD_FILE", help="file holding the password (k8s secret)"
    )
    repo_path = environ.var(None, name="REPO_PATH", help="repository, e.g. my/repo")
    source_prefix = environ.var("release-", name="SOURCE_PREFIX", help="tag prefix CI pushes")
    target_prefix = environ.var(None, name="TARGET_PREFIX", help="tag prefix Flux follows")
    poll_interval = environ.var("1m", name="POLL_INTERVAL", help="Go duration between polls")
    http_port = environ.var("8080", name="HTTP_PORT", help="ops endpoints port")
    http_host = environ.var("0.0.0.0", name="HTTP_HOST", help="ops endpoints address")
    registry_url = environ.var(
        "https://registry-1.docker.io", name="REGISTRY_URL", help="registry API base URL"
    )
    request_timeout = environ.var("10s", name="REQUEST_TIMEOUT", help="bound on every request")
    dry_run = environ.var("false", name="DRY_RUN", help="report, never write the registry")
    overwrite_target = environ.var(
        "false", name="OVERWRITE_TARGET", help="replace a target tag holding another digest"
    )
    pprof_enabled = environ.var("true", name="PPROF_ENABLED", help="serve /debug/pprof/")
    log_level = environ.var("info", name="LOG_LEVEL", help="debug, info, warning or error")
    log_format = environ.var("json", name="LOG_FORMAT", help="json or console")


def _entries() -> list[tuple[str, str, str | None, str]]:
    """(attribute, VARIABLE, default, help) for every declared variable, in order."""
    out = []
    for field in attrs.fields(RawEnv):  # type: ignore[arg-type]
        entry = field.metadata[environ._environ_config.CNF_KEY]
        out.append((field.name, entry.name, entry.default, entry.help or ""))
    return out


_ENTRIES = _entries()
#: Variable name -> default as written in the environment (None: mandatory or unset).
ENV_VARS: dict[str, str | None] = {name: default for _, name, default, _ in _ENTRIES}
MANDATORY = ("DOCKERHUB_USER", "REPO_PATH", "TARGET_PREFIX")


class Secret:
    """A string that refuses to be printed: repr/str/format never show the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@attrs.frozen
class Config:
    rpc_url: str
    dockerhub_user: str
    dockerhub_password: Secret = attrs.field(repr=False)
    repo_path: str
    source_prefix: str
    target_prefix: str
    poll_interval: float  # seconds
    http_port: int
    http_host: str
    registry_url: str
    request_timeout: float  # seconds
    dry_run: bool
    overwrite_target: bool
    pprof_enabled: bool
    log_level: str
    log_format: str
    dockerhub_password_file: str | None = None


class ConfigError(Exception):
    """Every problem found in the environment, one per line, ready to print."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _url(value: str, *, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL; expected e.g. {what}")
    return value.rstrip("/")


def _duration(value: str) -> float:
    try:
        ns = parse_go_duration(value.strip())
    except DurationError as exc:
        raise ValueError(f"{exc}; expected a Go duration like 30s, 1m30s, 1.5h") from None
    if ns <= 0:
        raise ValueError("must be > 0; expected a Go duration like 30s, 1m30s, 1.5h")
    return ns / 1e9


def _port(value: str) -> int:
    if not value.strip().isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError("expected an integer 1-65535")
    return int(value)


def _bool(value: str) -> bool:
    try:
        return _BOOLS[value.strip().lower()]
    except KeyError:
        raise ValueError("expected true/false/1/0/yes/no") from None


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.strip().lower() not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return value.strip().lower()

    return parse


def _repo(value: str) -> str:
    if REPOSITORY_RE.fullmatch(value) is None:
        raise ValueError("expected a lower-case repository path like my/repo")
    return value


def _prefix(value: str) -> str:
    if _PREFIX_RE.fullmatch(value) is None:
        raise ValueError("expected the start of a tag: letters, digits, _ . - (e.g. mainnet-)")
    return value


_PARSERS: dict[str, Callable[[str], Any]] = {
    "rpc_url": lambda v: _url(v, what="http://localhost:1317"),
    "registry_url": lambda v: _url(v, what="https://registry-1.docker.io"),
    "repo_path": _repo,
    "source_prefix": _prefix,
    "target_prefix": _prefix,
    "poll_interval": _duration,
    "request_timeout": _duration,
    "http_port": _port,
    "dry_run": _bool,
    "overwrite_target": _bool,
    "pprof_enabled": _bool,
    "log_level": _choice(LOG_LEVELS),
    "log_format": _choice(LOG_FORMATS),
}


def load(env: Mapping[str, str] | None = None) -> Config:
    """Read, convert and validate every variable; raise ConfigError listing all problems."""
    env = os.environ if env is None else env
    raw = environ.to_config(RawEnv, dict(env))
    problems: list[str] = []
    values: dict[str, Any] = {}
    for attr, name, _, _ in _ENTRIES:
        value = getattr(raw, attr)
        if value is None or value == "":
            if name in MANDATORY:
                problems.append(f"{name}: missing (mandatory)")
            values[attr] = None
            continue
        parse = _PARSERS.get(attr)
        try:
            values[attr] = parse(value) if parse else value
        except ValueError as exc:
            shown = "" if "PASSWORD" in name else f" (got {value[:60]!r})"
            problems.append(f"{name}: {exc}{shown}")

    password = values.pop("dockerhub_password")
    path = values["dockerhub_password_file"]
    if password is None and path is not None:
        try:
            password = Path(path).read_text().rstrip("\r\n")
        except OSError as exc:
            problems.append(f"DOCKERHUB_PASSWORD_FILE: cannot read {path!r}: {exc.strerror}")
        else:
            if not password:
                problems.append(f"DOCKERHUB_PASSWORD_FILE: {path!r} is empty")
    elif password is None:
        problems.append("DOCKERHUB_PASSWORD: missing (set it or DOCKERHUB_PASSWORD_FILE)")
    src, dst = values.get("source_prefix"), values.get("target_prefix")
    if src is not None and src == dst:
        problems.append(f"TARGET_PREFIX: must differ from SOURCE_PREFIX ({src!r})")
    if problems:
        raise ConfigError(problems)
    return Config(dockerhub_password=Secret(password or ""), **values)


def help_text() -> str:
    """The variables table for `--help`: name, default, meaning."""
    lines = ["environment variables:"]
    for _, name, default, text in _ENTRIES:
        shown = "(mandatory)" if name in MANDATORY else f"default {default}"
        if name == "DOCKERHUB_PASSWORD":
            shown = "(mandatory unless _FILE is set)"
        elif default is None and name not in MANDATORY:
            shown = "(optional)"
        lines.append(f"  {name:<24} {shown:<38} {text}")
    return "\n".join(lines)

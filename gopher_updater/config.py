"""Configuration: environment variables only, validated all at once.

Each variable is one declarative `Var` in `VARS`: name, default, help text and a parser that
raises ValueError. The loader applies the same rules to all of them, because an operator fixing
a Deployment wants *every* problem in one message and the same answer for the same mistake:

- unset, or set to the empty string: the default; for a mandatory variable, "missing". The one
  exception is a variable where "" is a meaningful choice (`SOURCE_PREFIX=""`: CI pushes bare
  `v1.2.3` tags), declared with `empty_is_value=True`.
- only whitespace: refused (a templating slip, not a choice). Otherwise surrounding whitespace
  is ignored, except in secrets, which are taken verbatim.
- a secret (`secret=True`) may instead come from a file named by `NAME_FILE` (never both), is
  kept as a `Secret` and is never echoed in an error; other values are quoted, URLs redacted.

Booleans are parsed here rather than by a library because the usual parsers map any unknown
string to False, where a typo in `DRY_RUN` must fail loudly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from gopher_updater.duration import DurationError, parse_go_duration
from gopher_updater.model import REPOSITORY_RE
from gopher_updater.secret import Secret, SecretFileError, read_secret_file
from gopher_updater.urls import CheckedUrl, Userinfo, check_host, check_url, redact_url

__all__ = ["ENV_VARS", "MANDATORY", "VARS", "Config", "ConfigError", "Secret", "Var", "load"]

_PREFIX_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}")
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")
#: Distribution's limit on a repository name.
MAX_REPO_PATH = 255


# --- parsers: str -> value, ValueError with a message that says what is expected --------


def url(*, userinfo: Userinfo = "refuse", example: str) -> Callable[[str], CheckedUrl]:
    def parse(value: str) -> CheckedUrl:
        try:
            return check_url(value, userinfo=userinfo)
        except ValueError as exc:
            raise ValueError(f"{exc}; expected e.g. {example}") from None

    return parse


def duration(*, floor: str, ceiling: str) -> Callable[[str], float]:
    """A Go duration in seconds, within [floor, ceiling] (themselves Go durations)."""
    low, high = parse_go_duration(floor), parse_go_duration(ceiling)

    def parse(value: str) -> float:
        try:
            ns = parse_go_duration(value)
        except DurationError as exc:
            raise ValueError(f"{exc}; expected a Go duration like 30s, 1m30s, 1.5h") from None
        if not low <= ns <= high:
            raise ValueError(f"must be between {floor} and {ceiling}")
        return ns / 1e9

    return parse


def comma_list(item: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    """`a, b, c` -> a tuple of parsed items; an empty item or a bad one names its position."""

    def parse(value: str) -> tuple[Any, ...]:
        out, problems = [], []
        for n, part in enumerate(value.split(","), start=1):
            try:
                if not part.strip():
                    raise ValueError("empty item")
                out.append(item(part.strip()))
            except ValueError as exc:
                problems.append(f"item {n}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return tuple(out)

    return parse


def _port(value: str) -> int:
    if re.fullmatch(r"[0-9]{1,5}", value) is None or not 1 <= int(value) <= 65535:
        raise ValueError("expected an integer 1-65535")
    return int(value)


def _bool(value: str) -> bool:
    try:
        return _BOOLS[value.lower()]
    except KeyError:
        raise ValueError("expected true/false/1/0/yes/no") from None


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.lower() not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return value.lower()

    return parse


def _repo(value: str) -> str:
    if len(value) > MAX_REPO_PATH:
        raise ValueError(f"longer than {MAX_REPO_PATH} characters (the registry's limit)")
    if REPOSITORY_RE.fullmatch(value) is None:
        raise ValueError("expected a lower-case repository path like my/repo")
    return value


def _prefix(value: str) -> str:
    if value and _PREFIX_RE.fullmatch(value) is None:
        raise ValueError("expected the start of a tag: letters, digits, _ . - (e.g. mainnet-)")
    return value


def _user(value: str) -> str:
    if len(value) > 256 or ":" in value or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("expected a user name without ':', spaces or control characters")
    return value


def _host(value: str) -> str:
    try:
        return check_host(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; e.g. 0.0.0.0, 127.0.0.1, ::, localhost") from None


# --- the variables ----------------------------------------------------------------------


def _quoted(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


@attrs.frozen
class Var:
    """One variable: how to read it, and how to show it in an error."""

    name: str
    default: str | None
    help: str
    parse: Callable[[str], Any] = str
    mandatory: bool = False
    #: Kept as a `Secret`, never echoed, not stripped; `NAME_FILE` may name a file holding it.
    secret: bool = False
    #: With `secret`: read `NAME_FILE` byte-exact (no trailing newline stripped).
    exact: bool = False
    #: "" is a choice, not "unset" (SOURCE_PREFIX).
    empty_is_value: bool = False
    #: For a URL parsed with userinfo="split": the Config field receiving the credentials.
    auth_attr: str | None = None
    show: Callable[[str], str] = _quoted

    @property
    def attr(self) -> str:
        return self.name.lower()

    @property
    def file_name(self) -> str | None:
        return self.name + "_FILE" if self.secret else None


def _show_url(value: str) -> str:
    return redact_url(value, keep_path=True)


VARS: tuple[Var, ...] = (
    Var(
        "RPC_URL",
        "http://localhost:1317",
        "Cosmos LCD (REST) base URL",
        url(userinfo="split", example="http://localhost:1317"),
        auth_attr="rpc_auth",
        show=_show_url,
    ),
    Var("DOCKERHUB_USER", None, "registry user (Docker ID)", _user, mandatory=True),
    Var(
        "DOCKERHUB_PASSWORD",
        None,
        "password or access token (Read & Write)",
        mandatory=True,
        secret=True,
    ),
    Var("REPO_PATH", None, "repository, e.g. my/repo", _repo, mandatory=True),
    Var("SOURCE_PREFIX", "release-", "tag prefix CI pushes", _prefix, empty_is_value=True),
    Var("TARGET_PREFIX", None, "tag prefix Flux follows", _prefix, mandatory=True),
    Var(
        "POLL_INTERVAL",
        "1m",
        "Go duration between polls (100ms-24h)",
        duration(floor="100ms", ceiling="24h"),
    ),
    Var("HTTP_PORT", "8080", "ops endpoints port", _port),
    Var("HTTP_HOST", "0.0.0.0", "ops endpoints address", _host),
    Var(
        "REGISTRY_URL",
        "https://registry-1.docker.io",
        "registry API base URL",
        url(userinfo="refuse", example="https://registry-1.docker.io"),
        show=_show_url,
    ),
    Var(
        "REQUEST_TIMEOUT",
        "10s",
        "bound on every request (100ms-5m)",
        duration(floor="100ms", ceiling="5m"),
    ),
    Var("DRY_RUN", "false", "report, never write the registry", _bool),
    Var("OVERWRITE_TARGET", "false", "replace a target tag holding another digest", _bool),
    Var("PPROF_ENABLED", "true", "serve /debug/pprof/", _bool),
    Var("LOG_LEVEL", "info", "debug, info, warning or error", _choice(LOG_LEVELS)),
    Var("LOG_FORMAT", "json", "json or console", _choice(LOG_FORMATS)),
)


def _declared() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for var in VARS:
        out[var.name] = var.default
        if var.file_name:
            out[var.file_name] = None
    return out


#: Every variable name -> its default as written in the environment (None: none).
ENV_VARS: dict[str, str | None] = _declared()
MANDATORY = tuple(var.name for var in VARS if var.mandatory)


@attrs.frozen
class Config:
    rpc_url: str  # without userinfo: the credentials are in rpc_auth
    dockerhub_user: str
    dockerhub_password: Secret = attrs.field(repr=False)
    repo_path: str
    source_prefix: str  # may be "" (bare `v1.2.3` source tags)
    target_prefix: str  # never "", never equal to source_prefix
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
    #: Basic-auth credentials given as RPC_URL's userinfo: send as an Authorization header.
    rpc_auth: tuple[str, Secret] | None = attrs.field(default=None, repr=False)


class ConfigError(Exception):
    """Every problem found in the environment, one per line, ready to print."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _present(env: Mapping[str, str], name: str, problems: list[str]) -> str | None:
    """The raw value, None when unset or "", after the whitespace-only rule."""
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    if not raw.strip():
        problems.append(f"{name}: only whitespace; unset it (or set it empty) for the default")
        return None
    return raw


def _secret(env: Mapping[str, str], var: Var, problems: list[str]) -> Secret | None:
    file_name = var.file_name or ""
    value = _present(env, var.name, problems)
    path = _present(env, file_name, problems)
    if value is not None and path is not None:
        problems.append(f"{var.name}: set either {var.name} or {file_name}, not both")
        return None
    if path is not None:
        try:
            return read_secret_file(path.strip(), exact=var.exact)
        except SecretFileError as exc:
            problems.append(f"{file_name}: {exc}")
            return None
    if value is None:
        if var.mandatory and not any(p.startswith(var.name) for p in problems):
            problems.append(f"{var.name}: missing (set it or {file_name})")
        return None
    return Secret(value)


def load(env: Mapping[str, str] | None = None) -> Config:
    """Read, convert and validate every variable; raise ConfigError listing all problems."""
    env = os.environ if env is None else env
    problems: list[str] = []
    values: dict[str, Any] = {}
    for var in VARS:
        if var.secret:
            values[var.attr] = _secret(env, var, problems)
            values[var.attr + "_file"] = _present(env, var.file_name or "", [])
            continue
        raw = _present(env, var.name, problems)
        if raw is None and var.empty_is_value and env.get(var.name) == "":
            raw = ""
        elif raw is None:
            if var.mandatory and not any(p.startswith(var.name + ":") for p in problems):
                problems.append(f"{var.name}: missing (mandatory)")
            raw = var.default
        if raw is None:
            values[var.attr] = None
            continue
        try:
            value = var.parse(raw.strip())
        except ValueError as exc:
            problems.append(f"{var.name}: {exc} (got {var.show(raw.strip())})")
            value = None
        if isinstance(value, CheckedUrl):
            if var.auth_attr is not None:
                values[var.auth_attr] = value.auth
            value = value.url
        values[var.attr] = value
    src, dst = values.get("source_prefix"), values.get("target_prefix")
    if dst is not None and src == dst:
        problems.append(f"TARGET_PREFIX: must differ from SOURCE_PREFIX ({src!r})")
    if problems:
        raise ConfigError(problems)
    return Config(**values)


def help_text() -> str:
    """The variables table for `--help`: name, default, meaning."""
    lines = ["environment variables:"]
    for var in VARS:
        shown = "(mandatory)" if var.mandatory else f"default {var.default}"
        if var.secret:
            shown = "(mandatory unless _FILE is set)" if var.mandatory else "(optional)"
        lines.append(f"  {var.name:<24} {shown:<38} {var.help}")
        if var.file_name:
            kind = "byte-exact" if var.exact else "trailing newline stripped"
            lines.append(f"  {var.file_name:<24} {'(optional)':<38} file holding it ({kind})")
    return "\n".join(lines)

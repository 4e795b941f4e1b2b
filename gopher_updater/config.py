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

The generic parts (`Var`, the parsers, those rules) live in `envparse`; this module is the
table and the project's own checks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import attrs

from gopher_updater.envparse import (
    Var,
    boolean,
    choice,
    duration,
    host,
    port,
    present,
    secret_from_env,
    show_url,
    url,
)
from gopher_updater.model import REPOSITORY_RE
from gopher_updater.secret import Secret
from gopher_updater.urls import CheckedUrl

__all__ = ["ENV_VARS", "MANDATORY", "VARS", "Config", "ConfigError", "Secret", "Var", "load"]

_PREFIX_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")
#: Distribution's limit on a repository name.
MAX_REPO_PATH = 255


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


VARS: tuple[Var, ...] = (
    Var(
        "RPC_URL",
        "http://localhost:1317",
        "Cosmos LCD (REST) base URL",
        url(userinfo="split", example="http://localhost:1317"),
        auth_attr="rpc_auth",
        show=show_url,
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
    Var("HTTP_PORT", "8080", "ops endpoints port", port),
    Var("HTTP_HOST", "0.0.0.0", "ops endpoints address", host),
    Var(
        "REGISTRY_URL",
        "https://registry-1.docker.io",
        "registry API base URL",
        url(userinfo="refuse", example="https://registry-1.docker.io"),
        show=show_url,
    ),
    Var(
        "REQUEST_TIMEOUT",
        "10s",
        "bound on every request (100ms-5m)",
        duration(floor="100ms", ceiling="5m"),
    ),
    Var("DRY_RUN", "false", "report, never write the registry", boolean),
    Var("OVERWRITE_TARGET", "false", "replace a target tag holding another digest", boolean),
    Var("PPROF_ENABLED", "true", "serve /debug/pprof/", boolean),
    Var("LOG_LEVEL", "info", "debug, info, warning or error", choice(LOG_LEVELS)),
    Var("LOG_FORMAT", "json", "json or console", choice(LOG_FORMATS)),
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


def load(env: Mapping[str, str] | None = None) -> Config:
    """Read, convert and validate every variable; raise ConfigError listing all problems."""
    env = os.environ if env is None else env
    problems: list[str] = []
    values: dict[str, Any] = {}
    for var in VARS:
        if var.secret:
            values[var.attr] = secret_from_env(env, var, problems)
            values[var.attr + "_file"] = present(env, var.file_name or "", [])
            continue
        raw = present(env, var.name, problems)
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

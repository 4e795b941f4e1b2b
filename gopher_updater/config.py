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
  `exact=True` reads that file byte for byte (HMAC keys: FLUX_RECEIVER_TOKEN,
  NOTIFY_WEBHOOK_TOKEN).

The raw strings are read through environ-config (`_RawEnvironment`, a class generated from
`VARS`); every rule and every check is ours (`envparse` and below), because environ-config
stops at the first problem and the operator wants all of them. The generic parts (`Var`, the
parsers, those rules) live in `envparse`; this module is the table (with the parsers only
its variables use), `Config`, `load` and `--help`'s table. The checks that span several
variables (TARGET_PREFIX against SOURCE_PREFIX, RPC_QUORUM against RPC_URL, the Flux
receivers, the notification settings) live in `config_checks`, which `load` runs last.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import attrs
import environ

from gopher_updater.config_checks import check_across
from gopher_updater.envparse import (
    Var,
    boolean,
    choice,
    duration,
    host,
    integer,
    port,
    present,
    secret_from_env,
    show_url,
    url,
    url_list,
)
from gopher_updater.flux_receiver import Receiver
from gopher_updater.model import REPOSITORY_RE
from gopher_updater.notify import EventType
from gopher_updater.notify_config import NotifySettings, parse_events
from gopher_updater.secret import Secret
from gopher_updater.urls import CheckedUrl, LcdEndpoint, check_url

__all__ = [
    "ENV_VARS",
    "MANDATORY",
    "MAX_LCD_ENDPOINTS",
    "VARS",
    "Config",
    "ConfigError",
    "load",
]

_PREFIX_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")
#: Distribution's limit on a repository name.
MAX_REPO_PATH = 255
#: RPC_URL's limit: every poll asks every endpoint; more than this is a mistake, not a pool.
MAX_LCD_ENDPOINTS = 8


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


def show_url_list(value: str) -> str:
    """RPC_URL as an error may show it: each item redacted, nothing of a credential.

    An unencoded `,` in a password splits it across two items, the second looking like no
    URL at all; so once the value holds an `@` anywhere, an item that is not a valid URL is
    not shown.
    """
    shown = []
    for item in value.split(","):
        item = item.strip()
        try:
            check_url(item, userinfo="split")
        except ValueError:
            if "@" in value:
                shown.append("<not shown>")
                continue
        shown.append(show_url(item) if item else "")
    return repr(",".join(shown))


VARS: tuple[Var, ...] = (
    Var(
        "RPC_URL",
        "http://localhost:1317",
        f"Cosmos LCD (REST) base URLs, comma-separated (1-{MAX_LCD_ENDPOINTS})",
        url_list(max_items=MAX_LCD_ENDPOINTS, example="http://localhost:1317"),
        field="lcd_endpoints",
        show=show_url_list,
    ),
    Var(
        "RPC_QUORUM",
        "1",
        "endpoints that must each show the halt (at most the RPC_URL count)",
        integer(low=1, high=MAX_LCD_ENDPOINTS),
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
    Var(
        "UPGRADE_STUCK_AFTER",
        "30m",
        "Go duration from the halt to 'stuck' (1s-168h)",
        duration(floor="1s", ceiling="168h"),
    ),
    Var(
        "FLUX_RECEIVER_URL",
        None,
        "Flux Receiver webhook URLs, comma-separated (a secret)",
        secret=True,
    ),
    Var(
        "FLUX_RECEIVER_TOKEN",
        None,
        "generic-hmac token: sign each nudge (X-Signature)",
        secret=True,
        exact=True,
    ),
    Var("NOTIFY_WEBHOOK_URL", None, "URL receiving a JSON POST per event (a secret)", secret=True),
    Var(
        "NOTIFY_WEBHOOK_TOKEN",
        None,
        "HMAC key: sign webhook bodies (X-Signature)",
        secret=True,
        exact=True,
    ),
    Var(
        "NOTIFY_URLS",
        None,
        "Apprise URLs, comma/space separated (gopher-updater[notify])",
        secret=True,
    ),
    Var("NOTIFY_EVENTS", "all", "event types to notify, comma/space separated", parse_events),
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
    #: RPC_URL: 1 to MAX_LCD_ENDPOINTS LCDs, in the order given, each without userinfo (its
    #: Basic-auth credentials are in its `auth`), no two with the same label and path.
    lcd_endpoints: tuple[LcdEndpoint, ...]
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
    #: How many distinct endpoints must each show the halt; 1 <= rpc_quorum <= endpoints.
    rpc_quorum: int = 1
    #: Seconds from the halt until an upgrade that has not resumed is `stuck`.
    upgrade_stuck_after: float = 1800.0
    #: FLUX_RECEIVER_URL(+_FILE) with FLUX_RECEIVER_TOKEN(+_FILE): empty = no nudging. Each
    #: carries the token (None: the `generic` type); they print as their origin only.
    flux_receivers: tuple[Receiver, ...] = ()
    #: A start-up warning about the token (it ends in a newline), or None.
    flux_token_warning: str | None = None
    #: The NOTIFY_* variables, checked (Apprise URLs by Apprise itself, when set).
    notify: NotifySettings = attrs.field(factory=NotifySettings)

    @property
    def rpc_url(self) -> str:
        """The first endpoint's URL, without userinfo (the one-endpoint view)."""
        return self.lcd_endpoints[0].url

    @property
    def rpc_auth(self) -> tuple[str, Secret] | None:
        """The first endpoint's Basic-auth credentials: send as an Authorization header."""
        return self.lcd_endpoints[0].auth

    @property
    def notify_events(self) -> frozenset[EventType]:
        return self.notify.events


class ConfigError(Exception):
    """Every problem found in the environment, one per line, ready to print."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _raw_environment_class() -> type:
    """An `@environ.config` class with one `environ.var` per name in ENV_VARS, default None.

    environ-config only fetches the strings here: a mandatory variable is not `Raise()`d,
    since every problem is collected and judged by the loader below.
    """
    fields: dict[str, Any] = {}
    for var in VARS:
        fields[var.name.lower()] = environ.var(None, name=var.name, help=var.help)
        if var.file_name:
            help_ = f"file holding {var.name}"
            fields[var.file_name.lower()] = environ.var(None, name=var.file_name, help=help_)
    cls: type = environ.config(prefix="")(type("_RawEnvironment", (), fields))
    # attrs wrote a repr that would show every secret the instance holds: replace it.
    setattr(cls, "__repr__", _hidden_repr)  # noqa: B010 (mypy refuses a method assignment)
    return cls


def _hidden_repr(self: object) -> str:
    return "_RawEnvironment(<not shown: it holds secrets>)"


_RawEnvironment = _raw_environment_class()


def _read_raw(env: Mapping[str, str]) -> dict[str, str | None]:
    """Every declared name -> its raw string, None when unset, read by environ-config."""
    raw: Any = environ.to_config(_RawEnvironment, environ=dict(env))
    return {name: getattr(raw, name.lower()) for name in ENV_VARS}


def load(env: Mapping[str, str] | None = None) -> Config:
    """Read, convert and validate every variable; raise ConfigError listing all problems."""
    raw = _read_raw(os.environ if env is None else env)
    problems: list[str] = []
    values: dict[str, Any] = {}
    for var in VARS:
        if var.secret:
            values[var.attr] = secret_from_env(raw, var, problems)
            values[var.attr + "_file"] = present(raw, var.file_name or "", [])
            continue
        value_raw = present(raw, var.name, problems)
        if value_raw is None and var.empty_is_value and raw.get(var.name) == "":
            value_raw = ""
        elif value_raw is None:
            if var.mandatory and not any(p.startswith(var.name + ":") for p in problems):
                problems.append(f"{var.name}: missing (mandatory)")
            value_raw = var.default
        if value_raw is None:
            values[var.attr] = None
            continue
        try:
            value = var.parse(value_raw.strip())
        except ValueError as exc:
            problems.append(f"{var.name}: {exc} (got {var.show(value_raw.strip())})")
            value = None
        if isinstance(value, CheckedUrl):
            if var.auth_attr is not None:
                values[var.auth_attr] = value.auth
            value = value.url
        values[var.attr] = value
    check_across(values, problems)
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
        lines.append(f"  {var.name:<26} {shown:<37} {var.help}")
        if var.file_name:
            kind = "byte-exact" if var.exact else "trailing newline stripped"
            lines.append(f"  {var.file_name:<26} {'(optional)':<37} file holding it ({kind})")
    return "\n".join(lines)

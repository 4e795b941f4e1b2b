"""The checks that span several variables, run by `config.load` after each variable alone.

Split from `config.py`, which declares every variable (`VARS`) and reads them one by one:
here the values already parsed are judged together and turned into what `Config` holds.
In this order, so problems are listed the same way every time:

- TARGET_PREFIX must differ from SOURCE_PREFIX; RPC_QUORUM is at most the RPC_URL count.
- FLUX_RECEIVER_URL with FLUX_RECEIVER_TOKEN -> `flux_receivers` (checked by `flux_receiver`).
- the NOTIFY_* values -> `notify` (checked by `notify_config`).

`check_across` edits the `values` being built for `Config` in place (the secret `*_file`
entries it consumes are popped) and appends one line per problem.
"""

from __future__ import annotations

from typing import Any

from gopher_updater.flux_receiver import ReceiverConfigError, parse_receivers, token_warning
from gopher_updater.notify import ALL_EVENT_TYPES
from gopher_updater.notify_config import NotifyConfigProblems, notify_settings
from gopher_updater.secret import Secret


def check_across(values: dict[str, Any], problems: list[str]) -> None:
    """Judge the parsed `values` together; append each problem to `problems`."""
    src, dst = values.get("source_prefix"), values.get("target_prefix")
    if dst is not None and src == dst:
        problems.append(f"TARGET_PREFIX: must differ from SOURCE_PREFIX ({src!r})")
    endpoints, quorum = values.get("lcd_endpoints"), values.get("rpc_quorum")
    if endpoints and quorum and quorum > len(endpoints):
        problems.append(
            f"RPC_QUORUM: {quorum} is more than the {len(endpoints)} endpoint(s) in RPC_URL"
        )
    _flux(values, problems)
    _notify(values, problems)


def _named(problems: list[str], *names: str) -> bool:
    return any(
        p.startswith(f"{name}:") or p.startswith(f"{name}_FILE:")
        for p in problems
        for name in names
    )


def _token_bytes(name: str, token: Secret | None, problems: list[str]) -> bytes | None:
    """A token as the bytes it was given: an env value's undecodable bytes come back as they
    were (surrogateescape), a file is UTF-8 (read_secret_file)."""
    if token is None:
        return None
    try:
        return token.reveal().encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        problems.append(f"{name}: not text the process can encode (a lone surrogate)")
        return None


def _reveal(secret: Secret | None) -> str | None:
    return None if secret is None else secret.reveal()


def _flux(values: dict[str, Any], problems: list[str]) -> None:
    """FLUX_RECEIVER_URL and FLUX_RECEIVER_TOKEN -> the receivers, checked by flux_receiver."""
    urls: Secret | None = values.pop("flux_receiver_url")
    token = _token_bytes("FLUX_RECEIVER_TOKEN", values.pop("flux_receiver_token"), problems)
    values.pop("flux_receiver_url_file")
    values.pop("flux_receiver_token_file")
    values["flux_token_warning"] = token_warning(token)
    if urls is None:
        if token is not None and not _named(problems, "FLUX_RECEIVER_URL"):
            problems.append("FLUX_RECEIVER_TOKEN: set without FLUX_RECEIVER_URL")
        values["flux_receivers"] = ()
        return
    try:
        values["flux_receivers"] = parse_receivers(urls.reveal(), token)
    except ReceiverConfigError as exc:
        name = "FLUX_RECEIVER_TOKEN" if exc.item == "receiver token" else "FLUX_RECEIVER_URL"
        problems.append(f"{name}: {exc}")
    except UnicodeError:  # a lone surrogate from the environment
        problems.append("FLUX_RECEIVER_URL: holds characters that are not text")


def _notify(values: dict[str, Any], problems: list[str]) -> None:
    """The NOTIFY_* values -> NotifySettings, checked by notify_config."""
    url: Secret | None = values.pop("notify_webhook_url")
    token = _token_bytes("NOTIFY_WEBHOOK_TOKEN", values.pop("notify_webhook_token"), problems)
    urls: Secret | None = values.pop("notify_urls")
    events = values.pop("notify_events")
    for name in ("notify_webhook_url_file", "notify_webhook_token_file", "notify_urls_file"):
        values.pop(name)
    if url is None and _named(problems, "NOTIFY_WEBHOOK_URL"):
        token = None  # its pairing with the URL cannot be judged
    try:
        values["notify"] = notify_settings(
            webhook_url=_reveal(url),
            webhook_token=token,
            urls=_reveal(urls),
            events=ALL_EVENT_TYPES if events is None else events,
        )
    except NotifyConfigProblems as exc:
        problems.extend(exc.lines)

"""The notification layer's pure parts: events, text, JSON schema, variables and lazy import."""

from __future__ import annotations

import calendar
import json
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gopher_updater.notify import (
    ALL_EVENT_TYPES,
    EventType,
    NotifyConfigError,
    NotifyEvent,
    UnknownEventTypeError,
    encode_event,
    event_json,
    parse_notify_events,
    render_text,
)
from gopher_updater.notify_apprise import (
    InvalidServiceUrlError,
    UnknownSchemeError,
    parse_notify_urls,
)
from gopher_updater.notify_config import NotifyConfigProblems, load_notify_settings

# The 15 types issue 12 names, written out independently of the enum.
ISSUE_TYPES = [
    "scheduled",
    "source_missing",
    "reminder",
    "source_moved",
    "rescheduled",
    "cancelled",
    "replaced",
    "halted",
    "promoted",
    "nudged",
    "node_upgraded",
    "resumed",
    "stuck",
    "conflict",
    "invalid_plan",
]
# The schema the README documents; additive only, so this list may only grow.
SCHEMA_KEYS = {
    "schema", "id", "type", "chain_id", "plan", "height", "eta_seconds", "source_tag",
    "target_tag", "digest", "at", "occurrence", "source_present", "previous_digest",
    "previous_height", "new_plan", "new_height", "delay_seconds", "halt_duration_seconds",
    "text",
}  # fmt: skip
DIGEST = "sha256:" + "0123456789abcdef" * 4
SECRET = "T0KEN-s3cr3t-zzq"


def event(kind: str, **fields: object) -> NotifyEvent:
    base: dict[str, object] = {"chain_id": "cosmoshub-4", "plan": "v18", "height": 19_000_000}
    return NotifyEvent(type=EventType(kind), **{**base, **fields})  # type: ignore[arg-type]


def test_event_types_are_exactly_the_issues() -> None:
    assert sorted(t.value for t in EventType) == sorted(ISSUE_TYPES)


def test_scheduled_line_reads_like_the_issue() -> None:
    eta_at = calendar.timegm((2026, 11, 26, 14, 2, 0))  # a Thursday
    e = event("scheduled", at=eta_at - 3 * 86400, eta_seconds=3 * 86400, source_present=True)
    assert render_text(e) == "v18 scheduled at 19,000,000, ETA Thu 14:02 UTC, image ready"
    missing = attrs.evolve(e, source_present=False, source_tag="release-v18")
    assert "image release-v18 missing" in render_text(missing)


def test_promoted_and_resumed_lines() -> None:
    promoted = event("promoted", delay_seconds=0.2, target_tag="mainnet-v18", digest=DIGEST)
    assert "halted, promoted 0.2 s later" in render_text(promoted)
    assert DIGEST[:19] in render_text(promoted)
    resumed = event("resumed", halt_duration_seconds=4 * 60 + 12)
    assert render_text(resumed).endswith("chain resumed after 4 m 12 s")


@pytest.mark.parametrize("kind", ISSUE_TYPES)
def test_every_type_renders_one_line_and_the_full_schema(kind: str) -> None:
    e = event(kind, eta_seconds=3600.0, digest=DIGEST, previous_digest=DIGEST, new_plan="v19")
    text = render_text(e)
    assert text and "\n" not in text and "v18" in text
    body = json.loads(encode_event(e))
    assert set(body) == SCHEMA_KEYS
    assert body["type"] == kind and body["height"] == 19_000_000 and body["text"] == text
    assert body == event_json(e)


def test_body_is_compact_ascii_and_signed_bytes_are_what_is_parsed() -> None:
    e = event("halted", plan="v18-é\u202e\x00")
    raw = encode_event(e)
    assert raw.isascii() and b'": ' not in raw and b'", "' not in raw
    assert json.loads(raw)["plan"] == "v18-é\u202e\x00"  # exact in JSON, escaped on the wire


def test_dedupe_key_includes_occurrence() -> None:
    day, hour = event("reminder", occurrence="24h"), event("reminder", occurrence="1h")
    assert day.dedupe_key != hour.dedupe_key
    assert day.dedupe_key == event("reminder", occurrence="24h", at=1.0).dedupe_key


_UNTRUSTED = st.text(st.characters(codec="utf-8"), max_size=300)


@pytest.mark.fuzz
@settings(deadline=None)
@given(kind=st.sampled_from(ISSUE_TYPES), plan=_UNTRUSTED, chain=_UNTRUSTED, tag=_UNTRUSTED)
def test_fuzz_untrusted_names_are_inert_in_text(kind: str, plan: str, chain: str, tag: str) -> None:
    e = event(kind, plan=plan, chain_id=chain, source_tag=tag, target_tag=tag, new_plan=plan)
    text = render_text(e)
    assert re.search(r"[\x00-\x1f\x7f<>@*`\[\]|]", text) is None
    assert len(text) < 400
    body = json.loads(encode_event(e))
    assert body["plan"] == plan[:256]


def test_notify_events_default_and_forms() -> None:
    assert parse_notify_events(None) == ALL_EVENT_TYPES
    assert parse_notify_events("  ") == ALL_EVENT_TYPES
    assert parse_notify_events("ALL") == ALL_EVENT_TYPES
    assert parse_notify_events("Promoted, resumed stuck") == {
        EventType.PROMOTED,
        EventType.RESUMED,
        EventType.STUCK,
    }


def test_unknown_event_type_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownEventTypeError) as info:
        parse_notify_events("promoted,promotd")
    assert info.value.unknown == ("promotd",)
    assert info.value.variable == "NOTIFY_EVENTS"
    for name in ISSUE_TYPES:
        assert name in str(info.value)


@pytest.mark.fuzz
@given(st.text(max_size=200))
def test_fuzz_notify_events(text: str) -> None:
    try:
        parsed = parse_notify_events(text)
    except UnknownEventTypeError as exc:
        assert exc.unknown and not set(exc.unknown) & {*ISSUE_TYPES, "all"}
        assert re.search(r"[\x00-\x1f]", str(exc)) is None
    else:
        assert parsed and parsed <= ALL_EVENT_TYPES


def test_unknown_apprise_scheme_names_only_the_scheme() -> None:
    with pytest.raises(UnknownSchemeError) as info:
        parse_notify_urls(f"json://127.0.0.1:9/ok nosuchservice://{SECRET}@host/{SECRET}")
    assert info.value.scheme == "nosuchservice"
    assert "URL 2" in str(info.value) and SECRET not in str(info.value)


def test_known_scheme_with_a_bad_url_is_its_own_error() -> None:
    with pytest.raises(InvalidServiceUrlError) as info:
        parse_notify_urls(f"discord://{SECRET}")
    assert info.value.scheme == "discord" and SECRET not in str(info.value)


def test_apprise_urls_parse_and_hide_the_url() -> None:
    urls = f"json://127.0.0.1:9/{SECRET},  ntfy://ntfy.example/{SECRET}"
    targets = parse_notify_urls(urls)
    assert [t.scheme for t in targets] == ["json", "ntfy"]
    assert SECRET not in repr(targets)


@pytest.mark.fuzz
@settings(deadline=None)
@given(
    scheme=st.from_regex(r"[a-z][a-z0-9+.-]{0,12}", fullmatch=True),
    rest=st.text(st.characters(codec="ascii", exclude_categories=["Cc", "Zs"]), max_size=60),
)
def test_fuzz_notify_urls_never_echo_the_url(scheme: str, rest: str) -> None:
    secret_part = f"{SECRET}{rest}"
    try:
        targets = parse_notify_urls(f"{scheme}://{secret_part}")
    except NotifyConfigError as exc:
        assert SECRET not in str(exc) and exc.variable == "NOTIFY_URLS"
    else:
        assert len(targets) == 1 and SECRET not in repr(targets)


def test_settings_collect_every_problem_without_secrets(tmp_path: Path) -> None:
    env = {
        "NOTIFY_WEBHOOK_URL": f"ftp://{SECRET}@example.com/",
        "NOTIFY_URLS": f"bogus://{SECRET}",
        "NOTIFY_URLS_FILE": str(tmp_path / "urls"),
        "NOTIFY_EVENTS": "promoted,nope",
    }
    with pytest.raises(NotifyConfigProblems) as info:
        load_notify_settings(env)
    variables = {e.variable for e in info.value.errors}
    assert variables == {"NOTIFY_WEBHOOK_URL", "NOTIFY_URLS", "NOTIFY_EVENTS"}
    assert SECRET not in str(info.value)


def test_token_file_is_read_byte_for_byte(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_bytes(b"k3y\n")
    url = tmp_path / "url"
    url.write_text(f"https://hooks.example/{SECRET}\n")
    s = load_notify_settings(
        {"NOTIFY_WEBHOOK_URL_FILE": str(url), "NOTIFY_WEBHOOK_TOKEN_FILE": str(token)}
    )
    assert s.webhook_token == b"k3y\n" and s.token_ends_in_newline
    assert s.webhook_url == f"https://hooks.example/{SECRET}"
    assert SECRET not in repr(s) and SECRET not in json.dumps(s.describe())
    assert s.describe()["webhook"] == "https://hooks.example"


def test_nothing_set_means_no_channel() -> None:
    s = load_notify_settings({})
    assert not s.enabled and s.channels(1.0) == []


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_apprise_is_imported_only_when_notify_urls_is_set() -> None:
    result = _python(
        "import sys\n"
        "import gopher_updater.notify, gopher_updater.notifier, gopher_updater.notify_config\n"
        "from gopher_updater.notify_config import load_notify_settings\n"
        "load_notify_settings({'NOTIFY_WEBHOOK_URL': 'http://127.0.0.1:9/x'})\n"
        "print('before', 'apprise' in sys.modules)\n"
        "load_notify_settings({'NOTIFY_URLS': 'json://127.0.0.1:9/x'})\n"
        "print('after', 'apprise' in sys.modules)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["before", "False", "after", "True"]


def test_missing_apprise_is_a_config_error() -> None:
    result = _python(
        "import sys; sys.modules['apprise'] = None\n"
        "from gopher_updater.notify_config import load_notify_settings\n"
        "try:\n"
        "    load_notify_settings({'NOTIFY_URLS': 'json://127.0.0.1:9/x'})\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "NOTIFY_URLS" in result.stdout and "gopher-updater[notify]" in result.stdout

"""Configuration: every variable, every error at once, secrets never printed."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import trio

from gopher_updater import config, rule_records
from gopher_updater.envparse import Var
from gopher_updater.notify import ALL_EVENT_TYPES
from gopher_updater.urls import LcdEndpoint

BASE = {
    "DOCKERHUB_USER": "me",
    "DOCKERHUB_PASSWORD": "hunter2-very-secret",
    "REPO_PATH": "me/node",
    "TARGET_PREFIX": "mainnet-",
}


def test_defaults_applied() -> None:
    cfg = config.load(BASE)
    assert cfg.rpc_url == config.ENV_VARS["RPC_URL"]
    assert cfg.registry_url == config.ENV_VARS["REGISTRY_URL"]
    assert cfg.source_prefix == config.ENV_VARS["SOURCE_PREFIX"]
    assert cfg.poll_interval == 60.0
    assert cfg.request_timeout == 10.0
    assert cfg.http_port == int(config.ENV_VARS["HTTP_PORT"] or 0)
    assert (cfg.dry_run, cfg.overwrite_target, cfg.pprof_enabled) == (False, False, True)
    assert (cfg.log_level, cfg.log_format) == ("info", "json")


def test_thirty_variables() -> None:
    # 17 until the Flux nudge, the upgrade timeline, several LCDs and notifications arrived.
    assert len(config.ENV_VARS) == 30
    assert {
        "RPC_QUORUM",
        "UPGRADE_STUCK_AFTER",
        *("FLUX_RECEIVER_URL", "FLUX_RECEIVER_URL_FILE"),
        *("FLUX_RECEIVER_TOKEN", "FLUX_RECEIVER_TOKEN_FILE"),
        *("NOTIFY_WEBHOOK_URL", "NOTIFY_WEBHOOK_URL_FILE"),
        *("NOTIFY_WEBHOOK_TOKEN", "NOTIFY_WEBHOOK_TOKEN_FILE"),
        *("NOTIFY_URLS", "NOTIFY_URLS_FILE", "NOTIFY_EVENTS"),
    } <= config.ENV_VARS.keys()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[("true", True), ("TRUE", True), ("1", True), ("Yes", True)],
        *[("false", False), ("0", False), ("NO", False), ("False", False)],
    ],
)
def test_booleans(text: str, value: bool) -> None:
    assert config.load({**BASE, "DRY_RUN": text}).dry_run is value


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"POLL_INTERVAL": "abc"}, "POLL_INTERVAL"),
        ({"POLL_INTERVAL": "-1s"}, "POLL_INTERVAL"),
        ({"POLL_INTERVAL": "0"}, "POLL_INTERVAL"),
        ({"REQUEST_TIMEOUT": "10"}, "REQUEST_TIMEOUT"),
        ({"HTTP_PORT": "70000"}, "HTTP_PORT"),
        ({"HTTP_PORT": "0"}, "HTTP_PORT"),
        ({"RPC_URL": "not-a-url"}, "RPC_URL"),
        ({"REGISTRY_URL": "ftp://x"}, "REGISTRY_URL"),
        ({"TARGET_PREFIX": "release-"}, "TARGET_PREFIX"),
        ({"DRY_RUN": "maybe"}, "DRY_RUN"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"REPO_PATH": "Me/Node"}, "REPO_PATH"),
        ({"TARGET_PREFIX": "main net"}, "TARGET_PREFIX"),
    ],
)
def test_invalid_value_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load({**BASE, **env})
    assert [p for p in info.value.problems if p.startswith(variable + ":")]


def test_all_problems_reported_at_once() -> None:
    env = {"POLL_INTERVAL": "abc", "HTTP_PORT": "70000", "RPC_URL": "nope"}
    with pytest.raises(config.ConfigError) as info:
        config.load(env)
    named = {p.split(":")[0] for p in info.value.problems}
    assert {"POLL_INTERVAL", "HTTP_PORT", "RPC_URL", *config.MANDATORY} <= named
    assert "DOCKERHUB_PASSWORD" in named


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    env = {k: v for k, v in BASE.items() if k != "DOCKERHUB_PASSWORD"}
    cfg = config.load({**env, "DOCKERHUB_PASSWORD_FILE": str(secret)})
    assert cfg.dockerhub_password.reveal() == "from-a-file"


def test_missing_password_file_is_reported(tmp_path: Path) -> None:
    env = {k: v for k, v in BASE.items() if k != "DOCKERHUB_PASSWORD"}
    with pytest.raises(config.ConfigError, match="DOCKERHUB_PASSWORD_FILE"):
        config.load({**env, "DOCKERHUB_PASSWORD_FILE": str(tmp_path / "absent")})


def test_password_never_printed(caplog: pytest.LogCaptureFixture) -> None:
    secret = BASE["DOCKERHUB_PASSWORD"]
    cfg = config.load(BASE)
    logging.getLogger("t").warning("config %s %r", cfg, cfg)
    texts = [repr(cfg), str(cfg), repr(cfg.dockerhub_password), f"{cfg.dockerhub_password}"]
    texts.append(caplog.text)
    assert all(secret not in text for text in texts)
    with pytest.raises(config.ConfigError) as info:
        config.load({**BASE, "HTTP_PORT": "x", "DOCKERHUB_PASSWORD": secret})
    assert secret not in str(info.value)


def _cli(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    clean = {k: v for k, v in os.environ.items() if k not in config.ENV_VARS}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "gopher_updater", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=10,
    )
    return proc, time.monotonic() - start


def test_help_lists_every_variable_with_its_default() -> None:
    proc, _ = _cli({}, "--help")
    assert proc.returncode == 0
    for name, default in config.ENV_VARS.items():
        line = next(line for line in proc.stdout.splitlines() if line.strip().startswith(name))
        if default is not None:
            assert default in line


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DOCKERHUB_USER": ""}, "DOCKERHUB_USER"),
        ({"REPO_PATH": ""}, "REPO_PATH"),
        ({"TARGET_PREFIX": ""}, "TARGET_PREFIX"),
        ({"POLL_INTERVAL": "abc"}, "POLL_INTERVAL"),
        ({"POLL_INTERVAL": "-1s"}, "POLL_INTERVAL"),
        ({"HTTP_PORT": "70000"}, "HTTP_PORT"),
        ({"RPC_URL": "not-a-url"}, "RPC_URL"),
        ({"TARGET_PREFIX": "release-", "SOURCE_PREFIX": "release-"}, "TARGET_PREFIX"),
    ],
)
@pytest.mark.parametrize("command", [(), ("run",), ("check",)])
def test_invalid_config_exits_2_fast_without_traceback(
    env: dict[str, str], variable: str, command: tuple[str, ...]
) -> None:
    proc, elapsed = _cli({**BASE, **env}, *command)
    assert proc.returncode == 2
    assert elapsed < 2.0
    assert variable in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert BASE["DOCKERHUB_PASSWORD"] not in proc.stderr + proc.stdout


def test_version() -> None:
    from gopher_updater import __version__

    proc, _ = _cli({}, "--version")
    assert proc.returncode == 0
    assert __version__ in proc.stdout


# --- issue 9: every value judged, every bad value one clear message ----------------------

SECRET = BASE["DOCKERHUB_PASSWORD"]


def _problems(env: dict[str, str]) -> dict[str, str]:
    """Problem text by variable name (fails the test if the config loaded)."""
    with pytest.raises(config.ConfigError) as info:
        config.load(env)
    out: dict[str, str] = {}
    for problem in info.value.problems:
        name, _, text = problem.partition(": ")
        out[name] = out.get(name, "") + text
    assert SECRET not in str(info.value)
    return out


_OPTIONAL = [v for v in config.VARS if not v.mandatory and not v.empty_is_value and not v.secret]
_OPTIONAL_SECRETS = [v for v in config.VARS if v.secret and not v.mandatory]


@pytest.mark.parametrize("var", _OPTIONAL, ids=lambda v: v.name)
def test_an_empty_optional_variable_means_its_default(var: Var) -> None:
    assert var.default is not None
    defaults = config.load(BASE)
    cfg = config.load({**BASE, var.name: ""})
    assert getattr(cfg, var.attr) == getattr(defaults, var.attr)
    assert getattr(cfg, var.attr) == getattr(config.load({**BASE, var.name: var.default}), var.attr)


@pytest.mark.parametrize("var", _OPTIONAL_SECRETS, ids=lambda v: v.name)
def test_an_empty_optional_secret_or_its_file_means_unset(var: Var) -> None:
    assert var.default is None and var.file_name
    assert config.load({**BASE, var.name: "", var.file_name: ""}) == config.load(BASE)


def test_empty_pprof_enabled_and_log_format_keep_their_defaults() -> None:
    cfg = config.load({**BASE, "PPROF_ENABLED": "", "LOG_FORMAT": ""})
    assert cfg.pprof_enabled is config.load(BASE).pprof_enabled is True
    assert cfg.log_format == config.ENV_VARS["LOG_FORMAT"]


@pytest.mark.parametrize("name", [*config.MANDATORY, "DOCKERHUB_PASSWORD"])
def test_an_empty_mandatory_variable_is_missing(name: str) -> None:
    assert "missing" in _problems({**BASE, name: ""})[name]


@pytest.mark.parametrize("name", sorted(config.ENV_VARS))
def test_a_whitespace_only_value_is_refused(name: str) -> None:
    assert "whitespace" in _problems({**BASE, name: " \t "})[name]


def test_surrounding_whitespace_is_ignored_outside_secrets() -> None:
    cfg = config.load({**BASE, "DRY_RUN": " true ", "REPO_PATH": " me/node\n", "HTTP_PORT": "81 "})
    assert (cfg.dry_run, cfg.repo_path, cfg.http_port) == (True, "me/node", 81)
    secret = config.load({**BASE, "DOCKERHUB_PASSWORD": " pass word "}).dockerhub_password
    assert secret.reveal() == " pass word "


def test_an_empty_source_prefix_is_a_choice_and_bare_tags_follow() -> None:
    from gopher_updater.model import Plan

    cfg = config.load({**BASE, "SOURCE_PREFIX": ""})
    assert cfg.source_prefix == ""
    plan = Plan(name="v1.2.3", height=100)
    tags = rule_records.TagScheme(cfg.source_prefix, cfg.target_prefix).for_plan(plan)
    assert isinstance(tags, rule_records.Tags)
    assert tags.source == plan.name
    assert tags.target == BASE["TARGET_PREFIX"] + plan.name


def test_an_empty_source_prefix_still_needs_a_target_prefix() -> None:
    assert (
        "missing" in _problems({**BASE, "SOURCE_PREFIX": "", "TARGET_PREFIX": ""})["TARGET_PREFIX"]
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1", "::", "::1", "[::1]", "localhost"])
def test_http_host_accepts_addresses_and_hostnames(host: str) -> None:
    assert config.load({**BASE, "HTTP_HOST": host}).http_host == host.strip("[]")


@pytest.mark.parametrize(
    "host",
    ["x y", "-bad", "bad-", "a" * 64, "a..b", "999.1.1.1", "host_name", "http://x", "é", "1.2.3"],
)
def test_http_host_refuses_anything_else(host: str) -> None:
    assert "hostname" in _problems({**BASE, "HTTP_HOST": host})["HTTP_HOST"]


def test_repo_path_is_length_limited() -> None:
    longest = "me/" + "n" * (config.MAX_REPO_PATH - 3)
    assert config.load({**BASE, "REPO_PATH": longest}).repo_path == longest
    assert "255" in _problems({**BASE, "REPO_PATH": longest + "n"})["REPO_PATH"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://h:0", "1-65535"),
        ("http://h:65536", "1-65535"),
        ("http://h:http", "1-65535"),
        ("http://h:-1", "1-65535"),
        ("ftp://h", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("http://", "host"),
        ("http:///path", "host"),
        ("http://h/?q=1", "query"),
        ("http://h/" + "p" * 2100, "2048"),
        ("http://h /", "whitespace"),
        ("http://[::1", "not a valid URL"),
        ("http://a_b..c/", "host"),
    ],
)
@pytest.mark.parametrize("name", ["RPC_URL", "REGISTRY_URL"])
def test_bad_urls_are_refused(name: str, value: str, expected: str) -> None:
    assert expected in _problems({**BASE, name: value})[name]


def test_registry_url_with_credentials_is_refused_without_echoing_them() -> None:
    problem = _problems({**BASE, "REGISTRY_URL": "https://me:s3cr3t-pw@registry.example"})
    assert "credentials" in problem["REGISTRY_URL"]
    assert "s3cr3t-pw" not in str(problem)
    assert "***@registry.example" in problem["REGISTRY_URL"]


def test_rpc_url_credentials_are_split_off_into_a_secret() -> None:
    cfg = config.load({**BASE, "RPC_URL": "https://lcd%40user:p%3Ass@lcd.example:1317/base/"})
    assert cfg.rpc_url == "https://lcd.example:1317/base"
    assert cfg.rpc_auth is not None
    user, password = cfg.rpc_auth
    assert (user, password.reveal()) == ("lcd@user", "p:ss")
    assert "p:ss" not in repr(cfg) and "p%3Ass" not in repr(cfg)
    assert config.load(BASE).rpc_auth is None


def test_a_bad_rpc_url_with_credentials_never_echoes_them() -> None:
    problem = _problems({**BASE, "RPC_URL": "http://me:s3cr3t-pw@lcd:99999"})["RPC_URL"]
    assert "1-65535" in problem
    assert "s3cr3t-pw" not in problem


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("POLL_INTERVAL", "500ms", True),
        ("POLL_INTERVAL", "100ms", True),
        ("POLL_INTERVAL", "99ms", False),
        ("POLL_INTERVAL", "1ns", False),
        ("POLL_INTERVAL", "24h", True),
        ("POLL_INTERVAL", "24h1s", False),
        ("REQUEST_TIMEOUT", "100ms", True),
        ("REQUEST_TIMEOUT", "50ms", False),
        ("REQUEST_TIMEOUT", "5m", True),
        ("REQUEST_TIMEOUT", "5m1s", False),
        ("REQUEST_TIMEOUT", "2562047h", False),
    ],
)
def test_durations_have_a_floor_and_a_ceiling(name: str, value: str, ok: bool) -> None:
    if ok:
        assert getattr(config.load({**BASE, name: value}), name.lower()) > 0
    else:
        assert "100ms" in _problems({**BASE, name: value})[name]


def test_password_and_password_file_together_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    problem = _problems({**BASE, "DOCKERHUB_PASSWORD_FILE": str(secret)})
    assert "not both" in problem["DOCKERHUB_PASSWORD"]


def _file_problem(path: str) -> str:
    env = {k: v for k, v in BASE.items() if k != "DOCKERHUB_PASSWORD"}
    return _problems({**env, "DOCKERHUB_PASSWORD_FILE": path})["DOCKERHUB_PASSWORD_FILE"]


def test_password_file_that_is_a_directory(tmp_path: Path) -> None:
    assert "a directory" in _file_problem(str(tmp_path))


def test_password_file_that_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    start = time.monotonic()
    assert "a FIFO" in _file_problem(str(fifo))
    assert time.monotonic() - start < 1.0


def test_password_file_that_is_not_utf8_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "latin1"
    path.write_bytes(b"caf\xe9-s3cret")
    problem = _file_problem(str(path))
    assert "not UTF-8" in problem
    assert "s3cret" not in problem and "xe9" not in problem


def test_password_file_that_is_huge_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    path.write_bytes(b"x" * (64 * 1024 + 1))
    assert "64 KiB" in _file_problem(str(path))


@pytest.mark.parametrize("content", [b"", b"\n", b" \r\n"])
def test_password_file_that_is_empty_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty"
    path.write_bytes(content)
    assert "empty" in _file_problem(str(path)) or "whitespace" in _file_problem(str(path))


def test_password_file_that_dangles_or_is_a_device(tmp_path: Path) -> None:
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    assert "cannot open" in _file_problem(str(link))
    assert "a device" in _file_problem("/dev/null")


def test_secret_file_reader_exact_mode_keeps_the_newline(tmp_path: Path) -> None:
    from gopher_updater.secret import read_secret_file

    path = tmp_path / "token"
    path.write_bytes(b"tok\xc3\xa9n\r\n")
    assert read_secret_file(str(path)).reveal() == "tokén"
    assert read_secret_file(str(path), exact=True).reveal() == "tokén\r\n"


def test_redact_url_shows_scheme_host_and_port_only() -> None:
    from gopher_updater.urls import redact_url

    url = "https://user:pw@host.example:8443/hook/t0ken?key=k3y#frag"
    assert redact_url(url) == "https://***@host.example:8443"
    assert redact_url(url, keep_path=True) == "https://***@host.example:8443/hook/t0ken"
    assert redact_url("http://[::1]:80/x") == "http://[::1]:80"
    assert redact_url("http://[::1") == "<invalid URL>"
    assert redact_url("not a url") == "<invalid URL>"


def test_comma_list_names_each_bad_item() -> None:
    from gopher_updater.envparse import comma_list, url

    parse = comma_list(url(userinfo="refuse", example="http://lcd:1317"))
    assert [u.url for u in parse("http://a:1317/, https://b")] == ["http://a:1317", "https://b"]
    with pytest.raises(ValueError, match=r"item 2: empty item; item 3: scheme"):
        parse("http://a,,ftp://c")


def test_every_variable_empty_exits_2_with_one_message() -> None:
    proc, elapsed = _cli(dict.fromkeys(config.ENV_VARS, ""), "run")
    assert proc.returncode == 2, proc.stderr
    assert elapsed < 5.0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.count("invalid configuration") == 1
    for name in (*config.MANDATORY, "DOCKERHUB_PASSWORD"):
        assert f"  - {name}: missing" in proc.stderr


def test_check_output_masks_rpc_url_credentials() -> None:
    env = {
        **BASE,
        "RPC_URL": "http://lcd-user:rpc-s3cret@127.0.0.1:9/lcd",
        "REGISTRY_URL": "http://127.0.0.1:9",
        "REQUEST_TIMEOUT": "300ms",
    }
    proc, _ = _cli(env, "check")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "chain http://127.0.0.1:9/lcd" in out
    assert "rpc-s3cret" not in out and "lcd-user" not in out
    assert "Traceback" not in out


async def test_rpc_url_credentials_reach_the_lcd_only_as_basic_auth(nursery: trio.Nursery) -> None:
    from gopher_updater import daemon
    from gopher_updater.chain_errors import ChainError

    heads: list[str] = []

    async def lcd(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data and (chunk := await stream.receive_some(65536)):
            data += chunk
        heads.append(data.decode("latin-1"))
        await stream.send_all(b"HTTP/1.1 500 x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, lcd, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    url = f"http://lcd-user:p%40ss@127.0.0.1:{port}"
    cfg = config.load({**BASE, "RPC_URL": url, "REQUEST_TIMEOUT": "1s"})
    async with daemon.chain_client(cfg) as chain:
        with pytest.raises(ChainError) as info:
            await chain.current_plan()
    assert "p@ss" not in str(info.value) and "p%40ss" not in str(info.value)
    assert heads
    token = base64.b64encode(b"lcd-user:p@ss").decode()
    request_line, *headers = heads[0].split("\r\n")
    assert "lcd-user" not in request_line
    auth = [h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("authorization:")]
    assert auth == [f"Basic {token}"]


@pytest.mark.parametrize(
    "value",
    ["http://user:pa/ss-S3CRET@host", "http://user:pa?ss-S3CRET@host", "http://u:pa#ss-S3CRET@h"],
)
def test_a_password_with_unencoded_delimiters_is_never_shown(value: str) -> None:
    from gopher_updater.urls import redact_url

    problems = _problems({**BASE, "RPC_URL": value, "REGISTRY_URL": value})
    assert "S3CRET" not in str(problems) and "pa" not in redact_url(value, keep_path=True)
    assert set(problems) >= {"RPC_URL", "REGISTRY_URL"}


# --- the next features' variables: several LCDs, the upgrade timeline, Flux, notifications --


def test_one_rpc_url_is_one_endpoint_and_the_first_is_rpc_url() -> None:
    cfg = config.load(BASE)
    (only,) = cfg.lcd_endpoints
    assert only == LcdEndpoint(url="http://localhost:1317")
    assert only.label == "http://localhost:1317" and cfg.rpc_quorum == 1


def test_rpc_url_takes_a_list_each_with_its_own_credentials() -> None:
    cfg = config.load(
        {
            **BASE,
            "RPC_URL": " https://u1:pw-0ne@a.example/lcd/ , http://b.example,http://[::1]:1317",
        }
    )
    a, b, c = cfg.lcd_endpoints
    assert (a.url, b.url, c.url) == (
        "https://a.example/lcd",
        "http://b.example",
        "http://[::1]:1317",
    )
    assert [e.label for e in cfg.lcd_endpoints] == [
        "https://a.example:443",
        "http://b.example:80",
        "http://[::1]:1317",
    ]
    assert a.auth is not None and (a.auth[0], a.auth[1].reveal()) == ("u1", "pw-0ne")
    assert b.auth is None and c.auth is None
    assert (cfg.rpc_url, cfg.rpc_auth) == (a.url, a.auth)
    assert "pw-0ne" not in repr(cfg) and "u1" not in repr(cfg)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://a,http://a:80", "item 2: the same endpoint as item 1"),
        ("https://a/x/,http://b,https://u:p@a:443/x", "item 3: the same endpoint as item 1"),
        ("http://a,,http://b", "item 2: empty item"),
        ("http://a,", "item 2: empty item"),
        (",".join(f"http://h{n}" for n in range(9)), "9 URLs; at most 8"),
        ("http://a, ftp://b", "item 2: scheme"),
    ],
)
def test_rpc_url_list_refuses_repeats_empties_and_too_many(value: str, expected: str) -> None:
    assert expected in _problems({**BASE, "RPC_URL": value})["RPC_URL"]


def test_rpc_url_list_same_host_other_path_or_port_is_another_endpoint() -> None:
    cfg = config.load({**BASE, "RPC_URL": "http://a/x,http://a/y,http://a:1317/x"})
    assert len(cfg.lcd_endpoints) == 3
    assert (
        len(
            config.load(
                {**BASE, "RPC_URL": ",".join(f"http://h{n}" for n in range(8))}
            ).lcd_endpoints
        )
        == 8
    )


@pytest.mark.parametrize(
    "value",
    [
        "http://user:pa,ss-S3CRET@host",  # an unencoded comma splits the password
        "http://a, http://user:pa,ss-S3CRET@host:99999",
        "http://user:S3CRET@h:0,http://b",
    ],
)
def test_a_bad_rpc_url_list_never_shows_a_credential(value: str) -> None:
    problem = _problems({**BASE, "RPC_URL": value})["RPC_URL"]
    assert "S3CRET" not in problem and "pa" not in problem.replace("expected", "")


@pytest.mark.parametrize(
    ("env", "quorum"),
    [({}, 1), ({"RPC_QUORUM": "1"}, 1), ({"RPC_QUORUM": " 2 ", "RPC_URL": "http://a,http://b"}, 2)],
)
def test_rpc_quorum(env: dict[str, str], quorum: int) -> None:
    assert config.load({**BASE, **env}).rpc_quorum == quorum


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "9", "٣", "1e3"])
def test_rpc_quorum_is_an_integer_from_1_to_8(value: str) -> None:
    assert "integer 1-8" in _problems({**BASE, "RPC_QUORUM": value})["RPC_QUORUM"]


def test_rpc_quorum_above_the_endpoint_count_names_both() -> None:
    problem = _problems({**BASE, "RPC_QUORUM": "3", "RPC_URL": "http://a,http://b"})
    assert problem["RPC_QUORUM"] == "3 is more than the 2 endpoint(s) in RPC_URL"
    # A bad RPC_URL is its own problem; the quorum is not judged against nothing.
    assert set(_problems({**BASE, "RPC_QUORUM": "3", "RPC_URL": "ftp://a"})) == {"RPC_URL"}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("", 1800.0),
        ("30m", 1800.0),
        ("5s", 5.0),
        ("1s", 1.0),
        ("168h", 604800.0),
        ("2h30m", 9000.0),
    ],
)
def test_upgrade_stuck_after(value: str, seconds: float) -> None:
    assert config.load({**BASE, "UPGRADE_STUCK_AFTER": value}).upgrade_stuck_after == seconds


@pytest.mark.parametrize("value", ["999ms", "0", "30", "168h1s", "7d", "-5m"])
def test_upgrade_stuck_after_has_a_floor_and_a_ceiling(value: str) -> None:
    assert "UPGRADE_STUCK_AFTER" in _problems({**BASE, "UPGRADE_STUCK_AFTER": value})


HOOK = "http://webhook-receiver.flux-system.svc/hook/" + "ab" * 32
HOOK2 = "https://flux.example:9292/hook/" + "cd" * 32


def test_no_flux_receiver_means_no_nudging() -> None:
    cfg = config.load(BASE)
    assert cfg.flux_receivers == () and cfg.flux_token_warning is None


def test_flux_receivers_from_files_token_byte_for_byte(tmp_path: Path) -> None:
    url_file, token_file = tmp_path / "url", tmp_path / "token"
    url_file.write_text(f"{HOOK},{HOOK2}\n")
    token_file.write_bytes(b"t0ken-S3CRET\n")
    cfg = config.load(
        {
            **BASE,
            "FLUX_RECEIVER_URL_FILE": str(url_file),
            "FLUX_RECEIVER_TOKEN_FILE": str(token_file),
        }
    )
    a, b = cfg.flux_receivers
    assert (a.url.reveal(), b.url.reveal()) == (HOOK, HOOK2)
    assert (a.index, b.index, a.origin) == (1, 2, "http://webhook-receiver.flux-system.svc")
    assert a.token is not None and a.token.reveal() == b"t0ken-S3CRET\n"
    assert cfg.flux_token_warning is not None and "newline" in cfg.flux_token_warning
    shown = repr(cfg) + str(cfg)
    assert "S3CRET" not in shown and "ab" * 32 not in shown and "cd" * 32 not in shown


def test_flux_receiver_from_the_environment_unsigned() -> None:
    cfg = config.load({**BASE, "FLUX_RECEIVER_URL": HOOK})
    (receiver,) = cfg.flux_receivers
    assert receiver.token is None and cfg.flux_token_warning is None


def test_flux_token_from_the_environment_is_taken_verbatim() -> None:
    cfg = config.load({**BASE, "FLUX_RECEIVER_URL": HOOK, "FLUX_RECEIVER_TOKEN": " k e y "})
    assert cfg.flux_receivers[0].token is not None
    assert cfg.flux_receivers[0].token.reveal() == b" k e y "


@pytest.mark.parametrize(
    ("env", "variable", "expected"),
    [
        (
            {"FLUX_RECEIVER_URL": "http://h/hook/x?S3CRET=1"},
            "FLUX_RECEIVER_URL",
            "receiver URL 1 (http://h): must not hold a query string or fragment",
        ),
        ({"FLUX_RECEIVER_URL": f"{HOOK},{HOOK}"}, "FLUX_RECEIVER_URL", "receiver URL 2"),
        ({"FLUX_RECEIVER_URL": "http://u:S3CRET@h/hook/x"}, "FLUX_RECEIVER_URL", "user:password"),
        ({"FLUX_RECEIVER_URL": "http://h"}, "FLUX_RECEIVER_URL", "no webhook path"),
        ({"FLUX_RECEIVER_TOKEN": "S3CRET"}, "FLUX_RECEIVER_TOKEN", "without FLUX_RECEIVER_URL"),
        ({"FLUX_RECEIVER_URL": " \t"}, "FLUX_RECEIVER_URL", "whitespace"),
    ],
)
def test_bad_flux_settings_are_named_without_their_secret(
    env: dict[str, str], variable: str, expected: str
) -> None:
    problems = _problems({**BASE, **env})
    assert expected in problems[variable], problems
    assert "S3CRET" not in str(problems)


def test_flux_url_and_its_file_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "url"
    path.write_text(HOOK)
    problems = _problems({**BASE, "FLUX_RECEIVER_URL": HOOK, "FLUX_RECEIVER_URL_FILE": str(path)})
    assert "not both" in problems["FLUX_RECEIVER_URL"]


def test_no_notify_variable_means_no_channel() -> None:
    cfg = config.load(BASE)
    assert not cfg.notify.enabled and cfg.notify_events == ALL_EVENT_TYPES


def test_notify_settings_from_files_token_byte_for_byte(tmp_path: Path) -> None:
    from gopher_updater.notify import EventType

    url, token = tmp_path / "url", tmp_path / "token"
    url.write_text("https://hooks.example/S3CRET-path\n")
    token.write_bytes(b"k3y-S3CRET\n")
    cfg = config.load(
        {
            **BASE,
            "NOTIFY_WEBHOOK_URL_FILE": str(url),
            "NOTIFY_WEBHOOK_TOKEN_FILE": str(token),
            "NOTIFY_EVENTS": "promoted, STUCK",
        }
    )
    assert cfg.notify.webhook_url == "https://hooks.example/S3CRET-path"
    assert cfg.notify.webhook_token == b"k3y-S3CRET\n" and cfg.notify.token_ends_in_newline
    assert cfg.notify_events == {EventType.PROMOTED, EventType.STUCK}
    assert "S3CRET" not in repr(cfg) + str(cfg)


def test_notify_urls_are_checked_by_apprise() -> None:
    cfg = config.load({**BASE, "NOTIFY_URLS": "json://127.0.0.1:9/S3CRET"})
    assert [t.scheme for t in cfg.notify.apprise] == ["json"]
    assert "S3CRET" not in repr(cfg)


@pytest.mark.parametrize(
    ("env", "variable", "expected"),
    [
        ({"NOTIFY_EVENTS": "promoted,nope"}, "NOTIFY_EVENTS", "unknown event type 'nope'"),
        ({"NOTIFY_URLS": "bogus://S3CRET"}, "NOTIFY_URLS", ""),
        ({"NOTIFY_WEBHOOK_URL": "ftp://S3CRET@example.com/"}, "NOTIFY_WEBHOOK_URL", ""),
        ({"NOTIFY_WEBHOOK_TOKEN": "S3CRET"}, "NOTIFY_WEBHOOK_TOKEN", "without NOTIFY_WEBHOOK_URL"),
        ({"NOTIFY_EVENTS": " "}, "NOTIFY_EVENTS", "whitespace"),
    ],
)
def test_bad_notify_settings_are_named_without_their_secret(
    env: dict[str, str], variable: str, expected: str
) -> None:
    problems = _problems({**BASE, **env})
    assert expected in problems[variable], problems
    assert "S3CRET" not in str(problems)
    assert not problems[variable].startswith(variable), "the name is said once"


def test_a_token_whose_url_file_is_broken_is_not_also_blamed(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent")
    problems = _problems(
        {
            **BASE,
            "NOTIFY_WEBHOOK_URL_FILE": missing,
            "NOTIFY_WEBHOOK_TOKEN": "k",
            "FLUX_RECEIVER_URL_FILE": missing,
            "FLUX_RECEIVER_TOKEN": "k",
        }
    )
    assert set(problems) == {"NOTIFY_WEBHOOK_URL_FILE", "FLUX_RECEIVER_URL_FILE"}


def test_every_new_problem_in_the_one_exit_2_message() -> None:
    env = {
        **BASE,
        "RPC_URL": "http://a,http://b",
        "RPC_QUORUM": "3",
        "UPGRADE_STUCK_AFTER": "1ms",
        "FLUX_RECEIVER_URL": "http://h",
        "NOTIFY_EVENTS": "nope",
        "NOTIFY_WEBHOOK_URL": "ftp://x/S3CRET",
    }
    proc, _ = _cli(env, "run")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("invalid configuration") == 1
    for name in ("RPC_QUORUM", "UPGRADE_STUCK_AFTER", "FLUX_RECEIVER_URL", "NOTIFY_EVENTS"):
        assert f"  - {name}: " in proc.stderr
    assert "  - NOTIFY_WEBHOOK_URL: " in proc.stderr and "S3CRET" not in proc.stderr


def test_the_raw_strings_are_read_through_environ_config() -> None:
    import environ

    raw = environ.to_config(config._RawEnvironment, environ={"DOCKERHUB_PASSWORD": "S3CRET"})
    assert raw.dockerhub_password == "S3CRET" and raw.rpc_url is None
    assert "S3CRET" not in repr(raw)
    generated = environ.generate_help(config._RawEnvironment)
    assert all(name in generated for name in config.ENV_VARS)


@pytest.mark.parametrize("name", ["RPC_URL", "NOTIFY_WEBHOOK_URL", "REGISTRY_URL"])
def test_an_absurdly_long_url_is_refused_and_not_echoed_in_full(name: str) -> None:
    value = "http://lcd.example/" + "x" * 5000
    with pytest.raises(config.ConfigError) as caught:
        config.load({**BASE, name: value})
    message = str(caught.value)
    assert name in message
    assert "2048" in message
    assert "x" * 200 not in message  # named, not echoed: the message stays one short line

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

from gopher_updater import config

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


def test_seventeen_variables() -> None:
    assert len(config.ENV_VARS) == 17


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


_OPTIONAL = [v for v in config.VARS if not v.mandatory and not v.empty_is_value]


@pytest.mark.parametrize("var", _OPTIONAL, ids=lambda v: v.name)
def test_an_empty_optional_variable_means_its_default(var: config.Var) -> None:
    assert var.default is not None
    defaults = config.load(BASE)
    cfg = config.load({**BASE, var.name: ""})
    assert getattr(cfg, var.attr) == getattr(defaults, var.attr)
    assert getattr(cfg, var.attr) == getattr(config.load({**BASE, var.name: var.default}), var.attr)


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
    from gopher_updater import rule
    from gopher_updater.model import Plan, RetagJob

    cfg = config.load({**BASE, "SOURCE_PREFIX": ""})
    assert cfg.source_prefix == ""
    plan = Plan(name="v1.2.3", height=100)
    job = rule.build_job(plan, cfg.source_prefix, cfg.target_prefix, reason="test")
    assert isinstance(job, RetagJob)
    assert job.source_tag == plan.name
    assert job.target_tag == BASE["TARGET_PREFIX"] + plan.name


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
    from gopher_updater.chain import ChainError

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

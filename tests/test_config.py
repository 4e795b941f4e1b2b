"""Configuration: every variable, every error at once, secrets never printed."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

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

"""pytest fixtures for the real registry.

One registry per auth mode per session (a start is ~50-250 ms, cheap but not free). Tests
share them, so every test pushes to its own repository or tag (`unique_repo`), and the token
server's knobs and counters are reset before each test.

Any test using these fixtures gets the `registry` marker automatically. A missing
`docker-registry` binary makes the fixture raise (an error, never a skip).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import structlog

from gopher_updater.logs import redact_secrets
from gopher_updater.testing.registry import AuthMode, RunningRegistry, running_registry
from gopher_updater.testing.registry_tls import TlsFiles, make_tls_files
from gopher_updater.testing.registry_token import TokenServer

REGISTRY_FIXTURES = frozenset(
    {"registry", "registry_none", "registry_basic", "registry_token", "registry_tls"}
)

_token_servers: list[TokenServer] = []
_repo_counter = itertools.count()


def _start(mode: AuthMode, factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with running_registry(mode, workdir=factory.mktemp(f"registry-{mode}")) as reg:
        if reg.token_server is not None:
            _token_servers.append(reg.token_server)
        try:
            yield reg
        finally:
            if reg.token_server is not None:
                _token_servers.remove(reg.token_server)


@pytest.fixture(scope="session")
def registry_none(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    yield from _start("none", tmp_path_factory)


@pytest.fixture(scope="session")
def registry_basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    yield from _start("basic", tmp_path_factory)


@pytest.fixture(scope="session")
def registry_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    yield from _start("token", tmp_path_factory)


@pytest.fixture(params=["none", "basic", "token"])
def registry(request: pytest.FixtureRequest) -> RunningRegistry:
    """The same test against each auth mode."""
    reg = request.getfixturevalue(f"registry_{request.param}")
    assert isinstance(reg, RunningRegistry)
    return reg


@pytest.fixture(autouse=True)
def _reset_token_servers() -> None:
    """Session-shared token servers start each test with default knobs and zero counters."""
    for server in _token_servers:
        server.reset()


@pytest.fixture
def structlog_via_stdlib() -> Iterator[None]:
    """Route structlog events through stdlib logging, as `logs.configure` does in production,
    so `caplog` sees the registry modules' key/value events; the previous config is restored."""
    saved = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            redact_secrets,
            structlog.processors.KeyValueRenderer(key_order=["event"]),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        structlog.configure(**saved)


@pytest.fixture
def unique_repo() -> str:
    """A repository name no other test in this session uses (registries are shared)."""
    return f"test/r{next(_repo_counter)}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REGISTRY_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.registry)


# --- TLS: a registry behind a CA the test creates (private-CA tests) -----------------------


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a server certificate for 127.0.0.1; no trust store knows the CA."""
    return make_tls_files(tmp_path_factory.mktemp("tls"), hosts=("127.0.0.1",))


@pytest.fixture(scope="session")
def registry_tls(
    tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningRegistry]:
    """The real registry served over TLS with `tls_files` (no auth)."""
    with running_registry("none", workdir=tmp_path_factory.mktemp("reg-tls"), tls=tls_files) as r:
        yield r


@pytest.fixture
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No SSL_CERT_FILE / SSL_CERT_DIR: only the default trust store, which lacks our CA."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return monkeypatch

"""The real registry over TLS with a private CA: `SSL_CERT_FILE` makes it work, and every
certificate failure says what is wrong (in the error that reaches /readyz and `check`).

httpx (with its default trust_env) reads SSL_CERT_FILE / SSL_CERT_DIR when a client is built,
so each test sets the environment first and then builds its client.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gopher_updater.manifest import Outcome
from gopher_updater.registry import RegistryClient
from gopher_updater.registry_errors import RegistryTLSError
from gopher_updater.registry_retry import RetryPolicy
from gopher_updater.testing.registry import RunningRegistry
from gopher_updater.testing.registry_tls import TlsFiles

pytestmark = pytest.mark.registry
FAST = RetryPolicy(wait_initial=0.01, wait_max=0.05, wait_jitter=0.01)


def client(url: str) -> RegistryClient:
    return RegistryClient(base_url=url, repository="test/tls", user="", password="",
                          timeout=2.0, deadline=5.0, retry=FAST)  # fmt: skip


async def test_unknown_ca_is_a_final_error_naming_the_verify_failure(
    registry_tls: RunningRegistry, no_ca_env: pytest.MonkeyPatch
) -> None:
    assert registry_tls.url.startswith("https://")
    async with client(registry_tls.url) as c:
        with pytest.raises(RegistryTLSError) as info:
            await c.check_push_access()
        assert c.request_count == 1  # not retried: only the operator can fix it
    text = str(info.value)
    assert "TLS certificate verify failed: unable to get local issuer certificate" in text
    assert not info.value.retryable


async def test_ssl_cert_file_naming_the_private_ca_makes_the_retag_work(
    registry_tls: RunningRegistry, tls_files: TlsFiles, no_ca_env: pytest.MonkeyPatch
) -> None:
    src = registry_tls.push_image("test/tls", "release-v1", "oci-index")
    no_ca_env.setenv("SSL_CERT_FILE", str(tls_files.ca))
    async with client(registry_tls.url) as c:
        await c.check_push_access()
        outcome = await c.retag("release-v1", "mainnet-v1")
    assert outcome.outcome is Outcome.PROMOTED
    assert registry_tls.head_digest("test/tls", "mainnet-v1") == src


@pytest.fixture
def ca_dir(tls_files: TlsFiles, tmp_path: Path) -> Path:
    """A CA directory: looked up by subject-hash file names, which `openssl rehash` makes."""
    (tmp_path / "ca.pem").write_bytes(tls_files.ca.read_bytes())
    rehash = subprocess.run(["openssl", "rehash", str(tmp_path)], capture_output=True, check=False)
    assert rehash.returncode == 0, rehash.stderr
    return tmp_path


async def test_ssl_cert_dir_works_too(
    registry_tls: RunningRegistry, ca_dir: Path, no_ca_env: pytest.MonkeyPatch
) -> None:
    no_ca_env.setenv("SSL_CERT_DIR", str(ca_dir))
    async with client(registry_tls.url) as c:
        await c.check_push_access()
        assert c.request_count == 1


async def test_hostname_mismatch_names_the_host(
    registry_tls: RunningRegistry, tls_files: TlsFiles, no_ca_env: pytest.MonkeyPatch
) -> None:
    no_ca_env.setenv("SSL_CERT_FILE", str(tls_files.ca))
    # The certificate is for 127.0.0.1 only; localhost is the same socket under another name.
    url = registry_tls.url.replace("127.0.0.1", "localhost")
    async with client(url) as c:
        with pytest.raises(RegistryTLSError) as info:
            await c.check_push_access()
    assert "TLS certificate verify failed: Hostname mismatch" in str(info.value)
    assert "localhost" in str(info.value)

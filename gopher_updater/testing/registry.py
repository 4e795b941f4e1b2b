"""A real distribution registry (Debian `docker-registry` 2.8.2) for tests, demo and benchmark.

Testing the registry client against a fake would test our reading of the spec twice; the real
registry is what catches a wrong `Accept`, a re-serialised manifest or a token without `aud`.
It starts in ~50 ms, so each test session runs one per auth mode:

- `none`: open registry.
- `basic`: htpasswd (bcrypt) with `user` and `reader`; htpasswd has no ACL, so both can push.
- `token`: Docker token auth, signed by `registry_token.TokenServer`; `user` may pull and push
  everywhere, `reader` may only pull, anonymous gets nothing.

The helpers here (push, HEAD, GET, skopeo) use their own sync httpx client and never the code
under test, so they are an independent check. In token mode they mint tokens directly, so the
token server's request counter only counts the client under test (skopeo does count).

This module is imported by `gopher-updater demo` from the installed package: no pytest, and
bcrypt / cryptography (dev extras) are imported only by the modes that need them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs
import httpx

from gopher_updater.testing.registry_images import (
    ACCEPT_ALL,
    IMAGE_KINDS,
    KIND_MEDIA_TYPE,
    ImageKind,
    build_image,
    sha256_digest,
)
from gopher_updater.testing.registry_proxy import FaultProxy, FaultResponse, ProxyRecord

if TYPE_CHECKING:
    from gopher_updater.testing.registry_tls import TlsFiles
    from gopher_updater.testing.registry_token import TokenServer

__all__ = [
    "ACCEPT_ALL",
    "IMAGE_KINDS",
    "KIND_MEDIA_TYPE",
    "AuthMode",
    "FaultProxy",
    "FaultResponse",
    "ImageKind",
    "ProxyRecord",
    "RegistryRigError",
    "RunningRegistry",
    "running_registry",
]

AuthMode = Literal["none", "basic", "token"]

TOKEN_SERVICE = "gopher-test-registry"
TOKEN_ISSUER = "gopher-test-token-issuer"
BASIC_REALM = "gopher-test-registry"
#: A cold start is ~50 ms; the margin is for a loaded 2-core CI box, not for normal runs.
START_TIMEOUT = 10.0
_LISTENING_RE = re.compile(r'msg="listening on 127\.0\.0\.1:(\d+)(, tls)?"')


class RegistryRigError(RuntimeError):
    """The rig itself failed (start-up, a seeding request, skopeo). Carries what was asked."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        self.status = status
        self.detail = detail
        text = message if status is None else f"{message}: HTTP {status}"
        super().__init__(f"{text} {detail[:300]}".rstrip())


#: `RunningRegistry.head_digest`'s tries on a 5xx (a read racing a tag write).
HEAD_TRIES = 10


@attrs.define
class RunningRegistry:
    """A started registry plus helpers that talk to it independently of the code under test."""

    url: str
    auth: str
    user: str
    password: str = attrs.field(repr=False)
    reader_user: str
    reader_password: str = attrs.field(repr=False)
    token_server: TokenServer | None
    workdir: Path
    log_path: Path
    _http: httpx.Client = attrs.field(repr=False, alias="http")

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, as it appears in an image reference."""
        return urllib.parse.urlsplit(self.url).netloc

    # -- auth ------------------------------------------------------------------------------

    def _auth_headers(self, repo: str) -> dict[str, str]:
        """Full rights on `repo` as `user`: Basic, or a token minted for pull,push."""
        if self.auth == "basic":
            raw = f"{self.user}:{self.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if self.auth == "token":
            from gopher_updater.testing.registry_token import Grant

            assert self.token_server is not None
            token = self.token_server.mint(
                self.user, [Grant("repository", repo, ("pull", "push", "delete"))]
            )
            return {"Authorization": f"Bearer {token}"}
        return {}

    def _request(
        self,
        method: str,
        url: str,
        repo: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        full = urllib.parse.urljoin(self.url + "/", url)
        return self._http.request(
            method,
            full,
            headers={**self._auth_headers(repo), **(headers or {})},
            content=content,
        )

    # -- seeding ---------------------------------------------------------------------------

    def upload_blob(self, repo: str, data: bytes) -> str:
        """Monolithic upload: POST an upload session, PUT the bytes to its Location."""
        digest = sha256_digest(data)
        resp = self._request("POST", f"/v2/{repo}/blobs/uploads/", repo)
        if resp.status_code != 202 or "Location" not in resp.headers:
            raise RegistryRigError(
                f"starting a blob upload in {repo}", status=resp.status_code, detail=resp.text
            )
        location = urllib.parse.urljoin(self.url + "/", resp.headers["Location"])
        sep = "&" if "?" in location else "?"
        resp = self._request(
            "PUT",
            f"{location}{sep}digest={digest}",
            repo,
            headers={"Content-Type": "application/octet-stream"},
            content=data,
        )
        if resp.status_code != 201:
            raise RegistryRigError(
                f"uploading blob {digest} to {repo}", status=resp.status_code, detail=resp.text
            )
        return digest

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        """PUT exact manifest bytes under a tag or digest; returns sha256 of those bytes."""
        digest = sha256_digest(body)
        resp = self._request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            repo,
            headers={"Content-Type": media_type},
            content=body,
        )
        if resp.status_code != 201:
            raise RegistryRigError(
                f"putting manifest {repo}:{ref}", status=resp.status_code, detail=resp.text
            )
        answered = resp.headers.get("Docker-Content-Digest")
        if answered != digest:
            raise RegistryRigError(f"registry stored {repo}:{ref} as {answered}, expected {digest}")
        return digest

    def push_image(self, repo: str, tag: str, kind: ImageKind = "docker-v2") -> str:
        """Push a fresh random image under `tag`; returns the tag's manifest digest.

        Index/list children (linux/amd64, linux/arm64) are pushed by digest first, as a
        registry requires them to exist in the same repository.
        """
        plan = build_image(kind)
        for blob in plan.blobs:
            self.upload_blob(repo, blob)
        for child in plan.children:
            self.put_manifest(repo, child.digest, child.body, child.media_type)
        return self.put_manifest(repo, tag, plan.top.body, plan.top.media_type)

    def delete_manifest(self, repo: str, digest: str) -> None:
        """Delete a manifest by digest (and so every tag on it); storage.delete is enabled."""
        resp = self._request("DELETE", f"/v2/{repo}/manifests/{digest}", repo)
        if resp.status_code != 202:
            raise RegistryRigError(
                f"deleting {repo}@{digest}", status=resp.status_code, detail=resp.text
            )

    # -- independent reads -----------------------------------------------------------------

    def head_digest(self, repo: str, ref: str) -> str | None:
        """Raw HEAD with all four manifest types; the `Docker-Content-Digest`, None on 404.

        A 5xx is asked again (up to `HEAD_TRIES` times): distribution's filesystem storage
        rewrites a tag's link file in place, and a HEAD racing that write reads it half
        written and answers 500 (measured: ~13 % of HEADs during a PUT loop on the same
        tag). Tests poll a tag while the daemon writes it; that is the daemon's PUT landing,
        not a failure.
        """
        for _ in range(HEAD_TRIES):
            resp = self._request(
                "HEAD", f"/v2/{repo}/manifests/{ref}", repo, headers={"Accept": ACCEPT_ALL}
            )
            if resp.status_code < 500:
                break
            time.sleep(0.02)
        if resp.status_code == 404:
            return None
        digest: str | None = resp.headers.get("Docker-Content-Digest")
        if resp.status_code != 200 or digest is None:
            raise RegistryRigError(f"HEAD {repo}:{ref}", status=resp.status_code)
        return digest

    def manifest(self, repo: str, ref: str) -> tuple[bytes, str]:
        """Raw manifest bytes and media type (Content-Type without parameters)."""
        resp = self._request(
            "GET", f"/v2/{repo}/manifests/{ref}", repo, headers={"Accept": ACCEPT_ALL}
        )
        if resp.status_code != 200:
            raise RegistryRigError(
                f"GET manifest {repo}:{ref}", status=resp.status_code, detail=resp.text
            )
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return resp.content, media_type

    def skopeo_digest(self, repo: str, tag: str) -> str | None:
        """sha256 of `skopeo inspect --raw`: a check by another client (containers/image).

        Credentials go in an auth file in the workdir, never on the command line.
        """
        skopeo = shutil.which("skopeo")
        if skopeo is None:
            raise RuntimeError("skopeo is not installed: apt-get install skopeo")
        cmd = [skopeo, "inspect", "--raw", "--tls-verify=false", "--retry-times=0"]
        if self.auth != "none":
            authfile = self.workdir / "skopeo-auth.json"
            if not authfile.exists():
                raw = f"{self.user}:{self.password}".encode()
                auths = {"auths": {self.host: {"auth": base64.b64encode(raw).decode()}}}
                authfile.write_text(json.dumps(auths))
                authfile.chmod(0o600)
            cmd.append(f"--authfile={authfile}")
        else:
            cmd.append("--no-creds")
        cmd.append(f"docker://{self.host}/{repo}:{tag}")
        proc = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace")
            if "manifest unknown" in err.lower():
                return None
            raise RegistryRigError(f"skopeo inspect {repo}:{tag} failed", detail=err)
        return "sha256:" + hashlib.sha256(proc.stdout).hexdigest()

    def log_tail(self, lines: int = 20) -> str:
        """The end of the registry's own log, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# -- start-up --------------------------------------------------------------------------------


def _registry_binary() -> str:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError(
            "the docker-registry binary is not installed (Debian's distribution 2.8.2): "
            "apt-get install docker-registry"
        )
    return binary


def _write_htpasswd(path: Path, users: dict[str, str]) -> None:
    import bcrypt

    lines = [
        f"{name}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}"
        for name, pw in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def _wait_for_port(proc: subprocess.Popen[bytes], log_path: Path, deadline: float) -> int:
    while time.monotonic() < deadline:
        match = _LISTENING_RE.search(log_path.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    raise RegistryRigError("docker-registry did not start listening", detail=tail)


def _wait_for_api(http: httpx.Client, url: str, log_path: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if http.get(f"{url}/v2/").status_code in (200, 401):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.005)
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    raise RegistryRigError("docker-registry did not answer GET /v2/", detail=tail)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def running_registry(
    auth: AuthMode = "none", *, workdir: Path | None = None, tls: TlsFiles | None = None
) -> Iterator[RunningRegistry]:
    """Start `docker-registry serve` on 127.0.0.1:<free port>; stop it (SIGTERM, kill) on exit.

    With `tls` (see `registry_tls.make_tls_files`) it serves https with that certificate; the
    rig's own helpers do not verify it (they are not what is under test).

    Storage (and config, log, htpasswd, cert) live in `workdir`, or in a temporary directory
    removed afterwards. The config is written as JSON, which YAML parsers accept, so no YAML
    library is needed at runtime.
    """
    if auth not in ("none", "basic", "token"):
        raise ValueError(f"unknown auth mode {auth!r}")
    binary = _registry_binary()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gopher-reg-")))
        workdir.mkdir(parents=True, exist_ok=True)
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(workdir / "storage")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": "127.0.0.1:0", "secret": secrets.token_hex(16)},
        }
        if tls is not None:
            config["http"] = {
                "addr": "127.0.0.1:0",
                "secret": secrets.token_hex(16),
                "tls": {"certificate": str(tls.certificate), "key": str(tls.key)},
            }
        user, password = "user", secrets.token_urlsafe(12)
        reader_user, reader_password = "reader", secrets.token_urlsafe(12)
        token_server: TokenServer | None = None
        if auth == "basic":
            htpasswd = workdir / "htpasswd"
            _write_htpasswd(htpasswd, {user: password, reader_user: reader_password})
            config["auth"] = {"htpasswd": {"realm": BASIC_REALM, "path": str(htpasswd)}}
        elif auth == "token":
            from gopher_updater.testing.registry_token import TokenServer, write_cert_bundle

            token_server = TokenServer(
                service=TOKEN_SERVICE,
                issuer=TOKEN_ISSUER,
                users={
                    user: (password, ("pull", "push", "delete")),
                    reader_user: (reader_password, ("pull",)),
                },
            )
            bundle = write_cert_bundle(token_server.signing_key, workdir / "token-root.pem")
            stack.enter_context(token_server)
            config["auth"] = {
                "token": {
                    "realm": token_server.url,
                    "service": TOKEN_SERVICE,
                    "issuer": TOKEN_ISSUER,
                    "rootcertbundle": str(bundle),
                }
            }
        config_path = workdir / "config.yml"
        config_path.write_text(json.dumps(config, indent=2))
        log_path = workdir / "registry.log"
        deadline = time.monotonic() + START_TIMEOUT
        with log_path.open("wb") as log_file:
            # The environment is scrubbed of REGISTRY_* so an operator's overrides can't leak in.
            env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
            proc = subprocess.Popen(
                [binary, "serve", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )
        stack.callback(_stop, proc)
        port = _wait_for_port(proc, log_path, deadline)
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        # Loopback plain http: no proxy from the environment, no CA bundle to load.
        http = stack.enter_context(httpx.Client(timeout=30.0, trust_env=False, verify=False))
        _wait_for_api(http, url, log_path, deadline)
        yield RunningRegistry(
            url=url,
            auth=auth,
            user=user,
            password=password,
            reader_user=reader_user,
            reader_password=reader_password,
            token_server=token_server,
            workdir=workdir,
            log_path=log_path,
            http=http,
        )

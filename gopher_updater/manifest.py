"""Manifests and retag outcomes: the values the registry client reads, writes and reports.

Kept apart from the HTTP client so the client module stays about the protocol, and so the
repository grammar is shared with the configuration loader.
"""

from __future__ import annotations

import enum
import hashlib
from urllib.parse import urlsplit

import attrs

from gopher_updater.model import REPOSITORY_RE, Digest

#: All four, on HEAD too: distribution answers an OCI index requested without its type with
#: 404 and silently swaps a Docker list for its amd64 child.
MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
ACCEPT = ", ".join(MEDIA_TYPES)
DOCKER_HUB_HOSTS = frozenset({"registry-1.docker.io", "docker.io", "index.docker.io"})


def normalize_repository(registry_url: str, repo_path: str) -> str:
    """`nginx` on Docker Hub -> `library/nginx`; elsewhere names are used as given (validated)."""
    name = repo_path.strip()
    if REPOSITORY_RE.fullmatch(name) is None or len(name) > 255:
        raise ValueError(f"invalid repository name {repo_path[:100]!r} (lower-case a-z0-9._-/)")
    host = urlsplit(registry_url).hostname or ""
    return f"library/{name}" if host in DOCKER_HUB_HOSTS and "/" not in name else name


def sha256_digest(content: bytes) -> Digest:
    return Digest("sha256:" + hashlib.sha256(content).hexdigest())


@attrs.frozen
class Manifest:
    """Raw manifest bytes (never re-serialised), their media type and the digest of the bytes."""

    content: bytes = attrs.field(repr=lambda c: f"<{len(c)} bytes>")
    media_type: str
    digest: Digest

    @classmethod
    def from_bytes(cls, content: bytes, media_type: str) -> Manifest:
        return cls(content, media_type, sha256_digest(content))


class Outcome(enum.StrEnum):
    """A dry run says WOULD_PROMOTE rather than PROMOTED so nobody mistakes it for a write."""

    PROMOTED = "promoted"  # PUT done and verified by HEAD
    ALREADY_PROMOTED = "already_promoted"  # target already at the source digest: no PUT
    CONFLICT = "conflict"  # target holds another digest, overwrite_target off: no PUT
    SOURCE_MISSING = "source_missing"
    WOULD_PROMOTE = "would_promote"  # dry run: a PUT would have happened; nothing written


@attrs.frozen
class RetagOutcome:
    """What `retag` did or (dry run) would do; `previous_target_digest` is the target before."""

    outcome: Outcome
    source_tag: str
    target_tag: str
    source_digest: Digest | None
    previous_target_digest: Digest | None
    dry_run: bool

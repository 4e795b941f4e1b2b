"""Small random images in the four manifest formats, built in memory.

The registry rig pushes these to a real registry. Every image is random (layer bytes, hence
config and manifest digests), so two pushes never collide and a test can't pass by reading
an image some earlier test left behind. Layers are real gzipped tarballs, so tools that pull
(`skopeo copy`) accept them; the registry itself never looks inside a blob.

Manifests are serialised with `indent=3` (what docker does): a retag must keep those exact
bytes, whitespace included, and a digest over pretty-printed JSON catches any client that
re-serialises instead of copying.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from typing import Literal

import attrs

ImageKind = Literal["docker-v2", "oci-manifest", "oci-index", "docker-list"]
IMAGE_KINDS: tuple[ImageKind, ...] = ("docker-v2", "oci-manifest", "oci-index", "docker-list")

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
#: All four, as a registry client must send them (on HEAD too) to get what is really stored.
ALL_MANIFEST_TYPES: tuple[str, ...] = (DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX)
ACCEPT_ALL = ", ".join(ALL_MANIFEST_TYPES)

#: Media type of the manifest stored under the tag, per kind.
KIND_MEDIA_TYPE: dict[ImageKind, str] = {
    "docker-v2": DOCKER_MANIFEST,
    "oci-manifest": OCI_MANIFEST,
    "oci-index": OCI_INDEX,
    "docker-list": DOCKER_LIST,
}

_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

PLATFORMS: tuple[str, ...] = ("amd64", "arm64")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@attrs.frozen
class Manifest:
    """One manifest to PUT: exact bytes, its media type and its digest."""

    body: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return sha256_digest(self.body)


@attrs.frozen
class ImagePlan:
    """Everything one `push_image` sends, in push order.

    `blobs` first, then `children` by digest (index/list only), then `top` under the tag.
    """

    blobs: tuple[bytes, ...]
    children: tuple[Manifest, ...]
    top: Manifest


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, indent=3).encode()


def _random_layer() -> tuple[bytes, str]:
    """A gzipped tar holding one random file; returns (blob, diff_id of the plain tar)."""
    payload = os.urandom(256)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("gopher-test/random.bin")
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), sha256_digest(plain)


def _single(oci: bool, arch: str) -> tuple[tuple[bytes, bytes], Manifest]:
    """One platform image: (layer blob, config blob) and its manifest."""
    layer, diff_id = _random_layer()
    config = _dumps(
        {
            "architecture": arch,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Labels": {"org.gopher-updater.test": "1"}},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    )
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": _OCI_CONFIG if oci else _DOCKER_CONFIG,
            "size": len(config),
            "digest": sha256_digest(config),
        },
        "layers": [
            {
                "mediaType": _OCI_LAYER if oci else _DOCKER_LAYER,
                "size": len(layer),
                "digest": sha256_digest(layer),
            }
        ],
    }
    return (layer, config), Manifest(_dumps(manifest), media_type)


def build_image(kind: ImageKind) -> ImagePlan:
    """A fresh random image of `kind`; index/list get linux/amd64 and linux/arm64 children."""
    oci = kind in ("oci-manifest", "oci-index")
    if kind in ("docker-v2", "oci-manifest"):
        blobs, top = _single(oci, "amd64")
        return ImagePlan(blobs=blobs, children=(), top=top)
    all_blobs: list[bytes] = []
    children: list[Manifest] = []
    for arch in PLATFORMS:
        blobs, child = _single(oci, arch)
        all_blobs.extend(blobs)
        children.append(child)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX if oci else DOCKER_LIST,
        "manifests": [
            {
                "mediaType": child.media_type,
                "size": len(child.body),
                "digest": child.digest,
                "platform": {"architecture": arch, "os": "linux"},
            }
            for child, arch in zip(children, PLATFORMS, strict=True)
        ],
    }
    top = Manifest(_dumps(index), KIND_MEDIA_TYPE[kind])
    return ImagePlan(blobs=tuple(all_blobs), children=tuple(children), top=top)

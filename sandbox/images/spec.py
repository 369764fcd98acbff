"""Words and small helpers of the OCI image spec: digests, chain ids, media types."""
from __future__ import annotations

import hashlib
import json
import platform
import re
from typing import Any, BinaryIO

from sandbox.images.exceptions import OCIError

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"
# containerd and BuildKit keep the full "name:tag" here; ref.name holds only the tag.
FULL_NAME = "io.containerd.image.name"

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REF = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")
CHUNK = 1 << 20


def check_digest(digest: str) -> str:
    """Return `digest` if it is a well-formed sha256 digest, else raise (it becomes a path)."""
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise OCIError(f"{digest!r} is not a sha256 digest (expected sha256:<64 hex>).")
    return digest


def hexof(digest: str) -> str:
    """The hex part of a sha256 digest."""
    return check_digest(digest).split(":", 1)[1]


def normalize_ref(ref: str) -> str:
    """`name` -> `name:latest`; refuse names that are not image references."""
    if ":" not in ref.rsplit("/", 1)[-1]:
        ref = f"{ref}:latest"
    if not _REF.match(ref):
        raise OCIError(
            f"{ref!r} is not an image name: use lowercase name[:tag], e.g. lab/base:latest."
        )
    return ref


def chain_ids(diff_ids: list[str]) -> list[str]:
    """chain_id(L0) = diff_id(L0); chain_id(Ln) = sha256(chain_id(Ln-1) + " " + diff_id(Ln))."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            text = f"{chains[-1]} {diff_id}".encode()
            chains.append("sha256:" + hashlib.sha256(text).hexdigest())
    return chains


def canonical_json(obj: Any) -> bytes:
    """The bytes a JSON blob is stored as: sorted keys, no whitespace, so digests repeat."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_stream(stream: BinaryIO) -> tuple[str, int]:
    """Digest and length of everything left in `stream`."""
    h = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def host_architecture() -> str:
    """This machine's architecture in GOARCH words, as image configs spell it."""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine
    )

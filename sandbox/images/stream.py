"""An image as one archive written front to back to any file (a Redis pipe, a socket):
an OCI layout in a tar (`oci`, what `skopeo inspect oci-archive:` reads) or a `docker
save` archive (`docker`). Blobs are read from the store as they are written, so nothing
is held in memory; sizes are known from the store before each member starts.

`receive_image` is the other end for a host that lacks an image: it takes the `oci`
archive (without the blobs it already has), checks every blob against its digest and
every new layer against the config's diff_id, then tags the image.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import IO, BinaryIO, Iterable

from sandbox.images import spec
from sandbox.images.exceptions import OCIError
from sandbox.images.store import Image, ImageStore, _compressed

FORMATS = ("oci", "docker")


def _member(tar: tarfile.TarFile, name: str, src: IO[bytes], size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    tar.addfile(info, src)


def _bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    _member(tar, name, io.BytesIO(data), len(data))


def write_archive(image: Image, store: ImageStore, out: BinaryIO, *, fmt: str = "oci",
                  skip: Iterable[str] = ()) -> None:
    """Write the image to `out` as an `oci` or `docker` archive; `skip`: blob digests the
    reader already has (oci only)."""
    if fmt not in FORMATS:
        raise OCIError(f"unknown export format {fmt!r}: use oci or docker.")
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        if fmt == "oci":
            _oci(image, store, tar, set(skip))
        else:
            _docker(image, store, tar)


def _oci(image: Image, store: ImageStore, tar: tarfile.TarFile, skip: set[str]) -> None:
    _bytes(tar, "oci-layout", spec.canonical_json({"imageLayoutVersion": "1.0.0"}))
    manifest_size = store.blob_path(image.manifest_digest).stat().st_size
    index = {"schemaVersion": 2, "mediaType": spec.MEDIA_INDEX, "manifests": [
        {"mediaType": spec.MEDIA_MANIFEST, "digest": image.manifest_digest, "size": manifest_size,
         "annotations": {spec.REF_NAME: image.ref.rsplit(":", 1)[1], spec.FULL_NAME: image.ref}}]}
    _bytes(tar, "index.json", json.dumps(index, indent=2).encode())
    for digest in [image.manifest_digest, image.id, *(layer.digest for layer in image.layers)]:
        if digest in skip:
            continue
        path = store.blob_path(digest)
        with open(path, "rb") as f:
            _member(tar, f"blobs/sha256/{spec.hexof(digest)}", f, os.fstat(f.fileno()).st_size)


def _docker(image: Image, store: ImageStore, tar: tarfile.TarFile) -> None:
    config_name = f"{spec.hexof(image.id)}.json"
    layer_names = [f"{spec.hexof(d)}/layer.tar" for d in image.diff_ids]
    with open(store.blob_path(image.id), "rb") as f:
        _member(tar, config_name, f, os.fstat(f.fileno()).st_size)
    for layer, name in zip(image.layers, layer_names):
        path = store.blob_path(layer.digest)
        if not _compressed(path):
            with open(path, "rb") as f:
                _member(tar, name, f, os.fstat(f.fileno()).st_size)
            continue
        # A gzip layer: its uncompressed size comes first, so it goes through a file on disk.
        with tempfile.TemporaryFile(dir=store.tmp) as plain:
            with store.open_uncompressed(layer.digest) as src:
                while chunk := src.read(1 << 20):
                    plain.write(chunk)
            size = plain.tell()
            plain.seek(0)
            _member(tar, name, plain, size)
    manifest = [{"Config": config_name, "RepoTags": [image.ref], "Layers": layer_names}]
    _bytes(tar, "manifest.json", json.dumps(manifest).encode())


def blobs_present(store: ImageStore) -> list[str]:
    """Digests of every blob in the store (what a sender may skip)."""
    if not store.blobs.is_dir():
        return []
    return [f"sha256:{p.name}" for p in store.blobs.iterdir() if len(p.name) == 64]


def _sha256_file(stream: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def receive_image(store: ImageStore, src: BinaryIO, *, ref: str, manifest_digest: str) -> Image:
    """Take an `oci` archive from `src` into the store and tag `ref` as `manifest_digest`;
    OCIError if a blob does not hash to its name, a layer to its diff_id, or one is missing."""
    spec.check_digest(manifest_digest)
    received: set[str] = set()
    with store.writing():
        try:
            with tarfile.open(fileobj=src, mode="r|") as tar:
                for member in tar:
                    if not member.isfile() or not member.name.startswith("blobs/sha256/"):
                        continue
                    digest = spec.check_digest("sha256:" + member.name.rsplit("/", 1)[1])
                    fd, tmp = tempfile.mkstemp(dir=store.tmp, prefix="receive-")
                    h = hashlib.sha256()
                    with os.fdopen(fd, "wb") as out, tar.extractfile(member) as data:
                        while chunk := data.read(1 << 20):
                            h.update(chunk)
                            out.write(chunk)
                    if f"sha256:{h.hexdigest()}" != digest:
                        os.unlink(tmp)
                        raise OCIError(f"blob {digest} arrived with content hashing to sha256:{h.hexdigest()}.")
                    store.put_blob(Path(tmp))
                    received.add(digest)
        except tarfile.TarError as exc:
            raise OCIError(f"the image archive is not a readable tar: {exc}") from exc
        manifest = store.read_json(manifest_digest)  # each checks its own digest
        config = store.read_json(manifest["config"]["digest"])
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        if len(diff_ids) != len(manifest.get("layers", [])):
            raise OCIError(f"{ref}: config names {len(diff_ids)} layers, manifest {len(manifest['layers'])}.")
        for desc, diff_id in zip(manifest["layers"], diff_ids):
            if not store.blob_path(desc["digest"]).exists():
                raise OCIError(f"{ref}: layer blob {desc['digest']} was neither here nor sent.")
            if desc["digest"] in received:
                with store.open_uncompressed(desc["digest"]) as f:
                    if _sha256_file(f) != diff_id:
                        raise OCIError(f"{ref}: layer {desc['digest']} does not unpack to diff_id {diff_id}.")
        return store.tag_manifest(ref, (manifest_digest, store.blob_path(manifest_digest).stat().st_size))

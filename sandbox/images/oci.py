"""Import and export OCI image layouts and `docker save` archives.

Import keeps the config blob byte for byte, so the image id (the config digest)
is the one docker, skopeo and umoci show. Every blob is checked against its
digest and every layer against the config's `rootfs.diff_ids`.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from sandbox.images import spec
from sandbox.images.exceptions import ImageError, OCIError
from sandbox.images.store import Image, ImageStore, Layer

MANIFESTS = (spec.MEDIA_MANIFEST, spec.DOCKER_MANIFEST)
INDEXES = (spec.MEDIA_INDEX, spec.DOCKER_LIST)
MAX_JSON = 16 << 20

Opener = Callable[[str], IO[bytes]]


def _json(stream: IO[bytes], what: str) -> tuple[Any, bytes]:
    """Parse a small JSON document, refusing absurd sizes."""
    data = stream.read(MAX_JSON + 1)
    if len(data) > MAX_JSON:
        raise OCIError(f"{what} is larger than {MAX_JSON} bytes; not an image document.")
    try:
        return json.loads(data), data
    except ValueError as exc:
        raise OCIError(f"{what} is not valid JSON: {exc}") from exc


# -- reading ---------------------------------------------------------------------
def _pick(index: dict[str, Any], ref: str | None, where: Path) -> dict[str, Any]:
    """The manifest descriptor in an OCI index that `ref` (tag or full name) names."""
    descs = index.get("manifests", [])
    if ref:
        tag = ref.rsplit(":", 1)[-1] if ":" in ref.rsplit("/", 1)[-1] else ref
        hits = [d for d in descs if ref in (d.get("annotations", {}).get(spec.FULL_NAME),
                                            d.get("annotations", {}).get(spec.REF_NAME))]
        hits = hits or [d for d in descs if d.get("annotations", {}).get(spec.REF_NAME) == tag]
        if hits:
            return hits[0]
        raise OCIError(f"{where}: no image {ref!r} in its index.json.")
    if len(descs) != 1:
        names = [d.get("annotations", {}).get(spec.REF_NAME, d.get("digest")) for d in descs]
        raise OCIError(f"{where} holds {len(descs)} images {names}; say which with path:tag.")
    return descs[0]


def _platform_manifest(index: dict[str, Any], where: Path) -> dict[str, Any]:
    """From a multi-platform index, the linux manifest for this machine."""
    for desc in index.get("manifests", []):
        plat = desc.get("platform", {})
        if plat.get("os") == "linux" and plat.get("architecture") == spec.host_architecture():
            return desc
    raise OCIError(f"{where}: no linux/{spec.host_architecture()} image in its index.")


def _layout_source(path: Path, ref: str | None) -> tuple[dict[str, Any], Opener, str | None]:
    """An OCI layout's manifest, a blob opener, and the image's full name if it says one."""
    if not (path / "oci-layout").is_file() or not (path / "index.json").is_file():
        raise OCIError(f"{path}: not an OCI image layout (no oci-layout / index.json).")

    def open_blob(digest: str) -> IO[bytes]:
        try:
            return open(path / "blobs" / "sha256" / spec.hexof(digest), "rb")
        except FileNotFoundError:
            raise OCIError(f"{path}: blob {digest} is missing.") from None

    with open(path / "index.json", "rb") as f:
        index, _ = _json(f, f"{path}/index.json")
    desc = _pick(index, ref, path)
    name = desc.get("annotations", {}).get(spec.FULL_NAME)
    while desc.get("mediaType") in INDEXES:
        with open_blob(desc["digest"]) as f:
            desc = _platform_manifest(_json(f, desc["digest"])[0], path)
    with open_blob(desc["digest"]) as f:
        manifest, _ = _json(f, f"manifest {desc['digest']}")
    if ref and not name and ":" in ref:
        name = ref
    return manifest, open_blob, name


def _archive_source(tar: tarfile.TarFile, path: Path, ref: str | None) -> tuple[dict[str, Any], Opener, str | None]:
    """A docker-save archive's image as a manifest plus an opener of its members."""

    def member(name: str) -> IO[bytes]:
        for _ in range(8):  # docker save may store a layer as a symlink to another
            try:
                info = tar.getmember(name)
            except KeyError:
                raise OCIError(f"{path}: member {name!r} is missing.") from None
            if not info.issym():
                break
            name = os.path.normpath(os.path.join(os.path.dirname(name), info.linkname))
        stream = tar.extractfile(info)
        if stream is None:
            raise OCIError(f"{path}: member {name!r} is not a file.")
        return stream

    entries, _ = _json(member("manifest.json"), f"{path}:manifest.json")
    if not isinstance(entries, list) or not entries:
        raise OCIError(f"{path}: manifest.json lists no images.")
    entry = entries[0]
    if ref:
        entry = next((e for e in entries if ref in (e.get("RepoTags") or [])), None)
        if entry is None and len(entries) == 1:
            entry = entries[0]
        elif entry is None:
            raise OCIError(f"{path}: no image {ref!r} in its manifest.json.")
    # Present the archive as if it were a layout: members stand in for blobs.
    names = {"config": entry["Config"], "layers": list(entry["Layers"])}
    manifest = {"config": {"digest": names["config"]},
                "layers": [{"digest": name} for name in names["layers"]]}
    tags = entry.get("RepoTags") or []
    return manifest, member, (ref or (tags[0] if tags else None))


def _ingest(store: ImageStore, manifest: dict[str, Any], open_blob: Opener,
            check_digests: bool) -> tuple[bytes, list[Layer]]:
    """Copy config and layers into the store, checking digests and diff_ids."""
    with open_blob(manifest["config"]["digest"]) as f:
        config, raw = _json(f, "image config")
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if len(diff_ids) != len(manifest.get("layers", [])):
        raise OCIError(f"config names {len(diff_ids)} layers, manifest {len(manifest['layers'])}.")
    if check_digests:
        got = store.put_bytes(raw)[0]
        if got != manifest["config"]["digest"]:
            raise OCIError(f"config blob hashes to {got}, not {manifest['config']['digest']}.")
    layers: list[Layer] = []
    for desc, diff_id in zip(manifest["layers"], diff_ids):
        fd, tmp = tempfile.mkstemp(dir=store.tmp, prefix="import-")
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, open_blob(desc["digest"]) as src:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
        # Check the blob before a single byte of it is unpacked.
        if check_digests and f"sha256:{h.hexdigest()}" != desc["digest"]:
            os.unlink(tmp)
            raise OCIError(f"layer blob hashes to sha256:{h.hexdigest()}, not {desc['digest']}.")
        parent = layers[-1].chain_id if layers else None
        layers.append(store.add_layer(Path(tmp), parent, expect_diff_id=spec.check_digest(diff_id)))
    return raw, layers


def read_image(path: Path, store: ImageStore, ref: str | None = None) -> tuple[dict[str, Any], list[Layer]]:
    """Bring an OCI layout dir or docker-save archive's layers into the store (untagged)."""
    config, layers, _ = _read(path, store, ref)
    return json.loads(config), layers


def _read(path: Path, store: ImageStore, ref: str | None) -> tuple[bytes, list[Layer], str | None]:
    """Import blobs and layers from `path`; also return the name the source gives."""
    path = Path(path)
    store.ensure()
    try:
        if path.is_dir():
            manifest, opener, name = _layout_source(path, ref)
            return (*_ingest(store, manifest, opener, check_digests=True), name)
        with tarfile.open(path, "r:*") as tar:
            manifest, opener, name = _archive_source(tar, path, ref)
            return (*_ingest(store, manifest, opener, check_digests=False), name)
    except ImageError:
        raise
    except (OSError, tarfile.TarError, KeyError, TypeError) as exc:
        raise OCIError(f"{path}: cannot read it as an OCI layout or docker archive: {exc}") from exc


def _short_name(name: str | None) -> str | None:
    """Docker Hub names as docker shows them: docker.io/library/busybox -> busybox."""
    if name:
        for prefix in ("docker.io/library/", "docker.io/"):
            if name.startswith(prefix):
                return name[len(prefix):]
    return name


def import_image(path: Path, store: ImageStore, *, tag: str | None = None) -> Image:
    """Import an OCI layout dir (`dir` or `dir:tag`) or a docker-save tar and tag it."""
    path, ref = Path(path), None
    if not path.exists() and ":" in str(path):
        text, ref = str(path).rsplit(":", 1)
        path = Path(text)
    if not path.exists():
        raise OCIError(f"{path}: no such file or directory to import.")
    with store.writing():
        config, layers, name = _read(path, store, ref)
        final = tag or _short_name(name) or f"{path.stem.lower()}:{ref or 'latest'}"
        return store.commit(final, config, layers)


# -- writing ---------------------------------------------------------------------
def _place(src: Path, dest: Path) -> None:
    """Put a blob at dest: a hard link when on one filesystem, else a copy."""
    if dest.exists():
        return
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def export_oci(image: Image, store: ImageStore, dest: Path) -> None:
    """Write (or add to) an OCI image layout; ref.name is the tag, the full name beside it."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for digest in [image.manifest_digest, image.id, *(layer.digest for layer in image.layers)]:
        _place(store.blob_path(digest), blobs / spec.hexof(digest))
    (dest / "oci-layout").write_bytes(spec.canonical_json({"imageLayoutVersion": "1.0.0"}))
    index_path = dest / "index.json"
    index = json.loads(index_path.read_bytes()) if index_path.exists() else {
        "schemaVersion": 2, "mediaType": spec.MEDIA_INDEX, "manifests": []}
    tag = image.ref.rsplit(":", 1)[1]
    keep = [d for d in index.get("manifests", []) if d.get("annotations", {}).get(spec.REF_NAME) != tag]
    size = store.blob_path(image.manifest_digest).stat().st_size
    keep.append({"mediaType": spec.MEDIA_MANIFEST, "digest": image.manifest_digest, "size": size,
                 "annotations": {spec.REF_NAME: tag, spec.FULL_NAME: image.ref}})
    index["manifests"] = keep
    index_path.write_text(json.dumps(index, indent=2))


def _add(tar: tarfile.TarFile, name: str, src: IO[bytes], size: int) -> None:
    """Add one reproducible member (root-owned, mtime 0)."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    tar.addfile(info, src)


def export_docker(image: Image, store: ImageStore, dest: Path) -> None:
    """Write a `docker save` archive: config, uncompressed layer.tar files, manifest.json."""
    config_name = f"{spec.hexof(image.id)}.json"
    layer_names = [f"{spec.hexof(d)}/layer.tar" for d in image.diff_ids]
    manifest = [{"Config": config_name, "RepoTags": [image.ref], "Layers": layer_names}]
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}-")
    try:
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            with open(store.blob_path(image.id), "rb") as f:
                _add(tar, config_name, f, store.blob_path(image.id).stat().st_size)
            for layer, name in zip(image.layers, layer_names):
                with tempfile.TemporaryFile(dir=store.tmp) as plain:
                    with store.open_uncompressed(layer.digest) as src:
                        shutil.copyfileobj(src, plain, 1 << 20)
                    size = plain.tell()
                    plain.seek(0)
                    _add(tar, name, plain, size)
            data = json.dumps(manifest).encode()
            _add(tar, "manifest.json", io.BytesIO(data), len(data))
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export_image(image: Image, store: ImageStore, dest: Path, *, fmt: str = "oci") -> None:
    """Export an image as an OCI layout directory (`oci`) or a docker-save tar (`docker`)."""
    dest = Path(dest)
    if fmt == "oci":
        if dest.exists() and not dest.is_dir():
            raise OCIError(f"{dest} exists and is not a directory; an OCI layout is a directory.")
        export_oci(image, store, dest)
    elif fmt == "docker":
        if dest.is_dir():
            raise OCIError(f"{dest} is a directory; a docker archive is a .tar file.")
        store.ensure()
        export_docker(image, store, dest)
    else:
        raise OCIError(f"unknown export format {fmt!r}: use oci or docker.")

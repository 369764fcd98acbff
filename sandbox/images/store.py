"""The image store: an OCI image layout plus each layer unpacked once, by chain_id.

    <root>/oci-layout, index.json     an OCI image layout; index.json names the images
    <root>/blobs/sha256/<hex>         layer tars (plain or gzip), configs, manifests
    <root>/layers/<chain hex>/diff    a layer applied as an overlayfs lowerdir (read-only)
    <root>/layers/<chain hex>/layer.json   {chain_id, diff_id, link}
    <root>/layers/l/<short>           -> ../<chain hex>/diff, short names for mount options
    <root>/cache/<key hex>.json       recipe step -> layer, so unchanged steps are reused
"""
from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from sandbox.images import spec
from sandbox.images.exceptions import ImageError, ImageNotFound, LayerError, OCIError
from sandbox.images.layers import LayerPolicy, apply_layer

SHORT_LINK = 12  # hex chars: 128 lowers * len("l/<12>:") = 1920 bytes, well under a page


@dataclass(frozen=True)
class Layer:
    """One layer as a manifest names it, plus where it sits in a chain."""

    digest: str
    size: int
    media_type: str
    diff_id: str
    chain_id: str

    def descriptor(self) -> dict[str, Any]:
        """The OCI descriptor of this layer's blob."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Image:
    """An image in the store: its layers bottom -> top and where they are unpacked."""

    ref: str
    id: str
    diff_ids: list[str]
    chain_ids: list[str]
    layer_dirs: list[Path]
    lower_links: list[str]
    manifest_digest: str = ""
    size: int = 0
    config: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    layers: list[Layer] = field(default_factory=list, repr=False, compare=False)

    @property
    def lowerdir(self) -> str:
        """The `lowerdir=` value (top first), relative to <root>/layers."""
        return ":".join(self.lower_links)

    def inspect(self) -> dict[str, Any]:
        """What `docker image inspect` would say about this image, plus the store's view."""
        cfg = self.config
        return {
            "Id": self.id,
            "RepoTags": [self.ref],
            "RepoDigests": [],
            "Created": cfg.get("created", ""),
            "Author": cfg.get("author", ""),
            "Architecture": cfg.get("architecture", ""),
            "Os": cfg.get("os", ""),
            "Size": self.size,
            "Config": cfg.get("config", {}),
            "RootFS": {"Type": "layers", "Layers": list(self.diff_ids)},
            "History": cfg.get("history", []),
            "GraphDriver": {
                "Name": "overlay",
                "Data": {"LowerDir": ":".join(str(d) for d in reversed(self.layer_dirs))},
            },
            "Lab": {
                "ManifestDigest": self.manifest_digest,
                "ChainIDs": list(self.chain_ids),
                "LowerLinks": list(self.lower_links),
            },
        }


def _compressed(path: Path) -> bool:
    """True if the file starts with the gzip magic."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x28\xb5":
        raise LayerError("zstd-compressed layers are not supported; re-export with gzip or no compression.")
    return magic == b"\x1f\x8b"


class ImageStore:
    """Content-addressed image layers and the images that name them."""

    def __init__(self, root: Path, *, uid_base: int = 100000, id_count: int = 65536) -> None:
        self.root = Path(root).absolute()
        self.uid_base = uid_base
        self.id_count = id_count
        self.blobs = self.root / "blobs" / "sha256"
        self.layers_dir = self.root / "layers"
        self.cache_dir = self.root / "cache"
        self.tmp = self.root / "tmp"

    @property
    def policy(self) -> LayerPolicy:
        """How this store applies layers."""
        return LayerPolicy(uid_base=self.uid_base, id_count=self.id_count)

    # -- layout -----------------------------------------------------------------
    def ensure(self) -> None:
        """Create the store's directories and OCI layout marker if missing."""
        for d in (self.blobs, self.layers_dir / "l", self.cache_dir, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            self._write_atomic(marker, spec.canonical_json({"imageLayoutVersion": "1.0.0"}))
        if not (self.root / "index.json").exists():
            self._write_index({"schemaVersion": 2, "mediaType": spec.MEDIA_INDEX, "manifests": []})

    def _write_atomic(self, path: Path, data: bytes) -> None:
        """Write a small file by rename so readers see old or new, never half."""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    @contextlib.contextmanager
    def lock(self, name: str, mode: int) -> Iterator[None]:
        """flock a lock file under the root (shared by writers, exclusive for gc)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / name, "a") as f:
            fcntl.flock(f, mode)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold off `gc` while blobs and layers are added but not yet tagged."""
        self.ensure()
        with self.lock("gc.lock", fcntl.LOCK_SH):
            yield

    @contextlib.contextmanager
    def tempdir(self, prefix: str = "work-") -> Iterator[Path]:
        """A scratch directory on the store's filesystem, removed afterwards."""
        self.ensure()
        path = Path(tempfile.mkdtemp(dir=self.tmp, prefix=prefix))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # -- blobs ------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        """Where a blob lives (the digest is checked, it becomes a path)."""
        return self.blobs / spec.hexof(digest)

    def put_blob(self, tmp: Path) -> tuple[str, int]:
        """Move a finished temp file into blobs/ under its digest."""
        with open(tmp, "rb") as f:
            digest, size = spec.sha256_stream(f)
        dest = self.blob_path(digest)
        if dest.exists():
            tmp.unlink()
        else:
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        return digest, size

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store a small blob (a config or manifest)."""
        self.ensure()
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="blob-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return self.put_blob(Path(tmp))

    def read_json(self, digest: str) -> dict[str, Any]:
        """Load a JSON blob, checking it still matches its digest."""
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is missing from the store; rebuild or re-import the image.") from None
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != digest:
            raise ImageError(f"blob {digest} is corrupt (its content hashes to {got}).")
        return json.loads(data)

    def open_uncompressed(self, digest: str) -> BinaryIO:
        """A layer blob as an uncompressed tar stream."""
        path = self.blob_path(digest)
        return gzip.open(path, "rb") if _compressed(path) else open(path, "rb")  # type: ignore[return-value]

    def put_cache(self, path: Path, entry: dict[str, Any]) -> None:
        """Record which layer a recipe step made (atomic, so a crash leaves no half entry)."""
        self._write_atomic(path, spec.canonical_json(entry))

    # -- layers -----------------------------------------------------------------
    def add_layer(self, tmp: Path, parent_chain: str | None, *, expect_diff_id: str | None = None) -> Layer:
        """Store a layer tar (plain or gzip) from a temp file and unpack it once."""
        gz = _compressed(tmp)
        with (gzip.open(tmp, "rb") if gz else open(tmp, "rb")) as f:
            try:
                diff_id, _ = spec.sha256_stream(f)  # type: ignore[arg-type]
            except (OSError, EOFError, zlib.error) as exc:
                raise LayerError(f"layer is not a readable gzip stream: {exc}") from exc
        if expect_diff_id and diff_id != expect_diff_id:
            raise OCIError(f"layer diff_id is {diff_id} but the image config says {expect_diff_id}.")
        digest, size = self.put_blob(tmp)
        chain = diff_id if parent_chain is None else spec.chain_ids([parent_chain, diff_id])[1]
        self.ensure_unpacked(chain, diff_id, digest)
        media = spec.MEDIA_LAYER_GZIP if gz else spec.MEDIA_LAYER
        return Layer(digest=digest, size=size, media_type=media, diff_id=diff_id, chain_id=chain)

    def layer_dir(self, chain_id: str) -> Path:
        """<root>/layers/<chain hex>: holds diff/ and layer.json."""
        return self.layers_dir / spec.hexof(chain_id)

    def ensure_unpacked(self, chain_id: str, diff_id: str, digest: str) -> None:
        """Apply a layer into layers/<chain hex>/diff unless it already is; atomic."""
        final = self.layer_dir(chain_id)
        if not (final / "layer.json").exists():
            tmp = Path(tempfile.mkdtemp(dir=self.layers_dir, prefix=".tmp-"))
            try:
                diff = tmp / "diff"
                diff.mkdir(mode=0o755)
                os.chown(diff, self.uid_base, self.uid_base)  # the rootfs root is container root's
                with self.open_uncompressed(digest) as stream:
                    apply_layer(stream, diff, self.policy)
                link = self._pick_link(chain_id)
                meta = {"chain_id": chain_id, "diff_id": diff_id, "digest": digest, "link": link}
                (tmp / "layer.json").write_bytes(spec.canonical_json(meta))
                os.chmod(tmp, 0o755)
                try:
                    os.rename(tmp, final)  # the layer appears whole or not at all
                except OSError:
                    if not (final / "layer.json").exists():
                        raise  # not a concurrent twin: a real failure
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        self._ensure_link(chain_id)

    def _pick_link(self, chain_id: str) -> str:
        """A short name for l/: the chain hex prefix, longer only on a collision."""
        hexid = spec.hexof(chain_id)
        for n in range(SHORT_LINK, len(hexid) + 1, 4):
            link = self.layers_dir / "l" / hexid[:n]
            if not link.is_symlink() or os.readlink(link) == f"../{hexid}/diff":
                return hexid[:n]
        return hexid

    def _ensure_link(self, chain_id: str) -> str:
        """Create l/<short> -> ../<chain hex>/diff if missing; return "l/<short>"."""
        hexid = spec.hexof(chain_id)
        short = json.loads((self.layer_dir(chain_id) / "layer.json").read_bytes())["link"]
        link = self.layers_dir / "l" / short
        if not link.is_symlink():
            # A unique temp name: many sandboxes may resolve the same image at once.
            tmp = self.layers_dir / "l" / f".tmp-{short}-{secrets.token_hex(6)}"
            os.symlink(f"../{hexid}/diff", tmp)
            os.replace(tmp, link)
        return f"l/{short}"

    # -- images -----------------------------------------------------------------
    def _read_index(self) -> dict[str, Any]:
        """index.json, or an empty index if the store is new."""
        try:
            return json.loads((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": spec.MEDIA_INDEX, "manifests": []}

    def _write_index(self, index: dict[str, Any]) -> None:
        """Replace index.json atomically."""
        self._write_atomic(self.root / "index.json", json.dumps(index, indent=2).encode())

    def refs(self) -> dict[str, dict[str, Any]]:
        """name:tag -> manifest descriptor, from index.json."""
        out: dict[str, dict[str, Any]] = {}
        for desc in self._read_index().get("manifests", []):
            ref = desc.get("annotations", {}).get(spec.REF_NAME)
            if ref:
                out[ref] = desc
        return out

    def commit(self, ref: str, config: dict[str, Any] | bytes, layers: list[Layer]) -> Image:
        """Write config (a dict, or bytes kept verbatim) and manifest; point name:tag at them."""
        ref = spec.normalize_ref(ref)
        data = config if isinstance(config, bytes) else spec.canonical_json(config)
        config_digest, config_size = self.put_bytes(data)
        return self.tag_manifest(ref, self.write_manifest(config_digest, config_size, layers))

    def write_manifest(self, config_digest: str, config_size: int, layers: list[Layer]) -> tuple[str, int]:
        """Store an OCI manifest for a config and its layers."""
        manifest = {
            "schemaVersion": 2,
            "mediaType": spec.MEDIA_MANIFEST,
            "config": {"mediaType": spec.MEDIA_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [layer.descriptor() for layer in layers],
        }
        return self.put_bytes(spec.canonical_json(manifest))

    def tag_manifest(self, ref: str, manifest: tuple[str, int]) -> Image:
        """Point name:tag at a stored manifest."""
        ref = spec.normalize_ref(ref)
        desc = {"mediaType": spec.MEDIA_MANIFEST, "digest": manifest[0], "size": manifest[1],
                "annotations": {spec.REF_NAME: ref}}
        with self.lock("index.lock", fcntl.LOCK_EX):
            index = self._read_index()
            others = [d for d in index.get("manifests", [])
                      if d.get("annotations", {}).get(spec.REF_NAME) != ref]
            index["manifests"] = sorted(others + [desc], key=lambda d: d["annotations"][spec.REF_NAME])
            self._write_index(index)
        return self.resolve(ref)

    def resolve(self, ref: str) -> Image:
        """The image called name:tag; ImageNotFound if there is none."""
        ref = spec.normalize_ref(ref)
        refs = self.refs()
        if ref not in refs:
            raise ImageNotFound(ref, list(refs))
        return self.image(ref, refs[ref]["digest"])

    def image(self, ref: str, manifest_digest: str) -> Image:
        """Load an image from its manifest, unpacking any layer dir that is missing."""
        manifest = self.read_json(manifest_digest)
        config_digest = manifest["config"]["digest"]
        config = self.read_json(config_digest)
        diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
        descs = manifest.get("layers", [])
        if len(diff_ids) != len(descs):
            raise ImageError(f"{ref}: manifest has {len(descs)} layers but the config {len(diff_ids)}.")
        chains = spec.chain_ids(diff_ids)
        layers = [Layer(d["digest"], d["size"], d["mediaType"], diff, chain)
                  for d, diff, chain in zip(descs, diff_ids, chains)]
        links = []
        for layer in layers:
            if not (self.layer_dir(layer.chain_id) / "layer.json").exists():
                with self.writing():
                    self.ensure_unpacked(layer.chain_id, layer.diff_id, layer.digest)
            links.append(self._ensure_link(layer.chain_id))
        return Image(
            ref=ref, id=config_digest, diff_ids=diff_ids, chain_ids=chains,
            layer_dirs=[self.layer_dir(c) / "diff" for c in chains],
            lower_links=list(reversed(links)), manifest_digest=manifest_digest,
            size=sum(layer.size for layer in layers), config=config, layers=layers,
        )

    def list(self) -> list[Image]:
        """Every tagged image, by name."""
        return [self.image(ref, desc["digest"]) for ref, desc in sorted(self.refs().items())]

    def remove(self, ref: str) -> None:
        """Untag name:tag; its blobs and layers go at the next `gc`."""
        ref = spec.normalize_ref(ref)
        with self.lock("index.lock", fcntl.LOCK_EX):
            index = self._read_index()
            keep = [d for d in index.get("manifests", [])
                    if d.get("annotations", {}).get(spec.REF_NAME) != ref]
            if len(keep) == len(index.get("manifests", [])):
                raise ImageNotFound(ref, list(self.refs()))
            index["manifests"] = keep
            self._write_index(index)

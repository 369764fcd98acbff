"""Garbage collection: drop what no tagged image names and no live session uses."""
from __future__ import annotations

import fcntl
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.images import spec
from sandbox.images.store import ImageStore


@dataclass
class GcReport:
    """What `gc` removed."""

    blobs: int = 0
    layers: int = 0
    bytes: int = 0
    kept_in_use: list[str] = field(default_factory=list)  # kept only because a session uses them


def sessions_in_use(data_dir: Path) -> set[str]:
    """chain_ids that live sessions use: every `sessions/*/layers.json` under `data_dir`."""
    found: set[str] = set()
    for pattern in ("sessions/*/layers.json", "hosts/*/sessions/*/layers.json"):
        for path in data_dir.glob(pattern):
            try:
                ids = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # a session being torn down; its layers are still in the index or gone
            if not isinstance(ids, list):
                continue
            for chain in ids:
                chain = chain if str(chain).startswith("sha256:") else f"sha256:{chain}"
                if spec.DIGEST.match(chain):
                    found.add(chain)
    return found


def collect(store: ImageStore, in_use: set[str] | None = None) -> GcReport:
    """Remove blobs, layer dirs and cache entries no image names and no session uses."""
    if in_use is None:
        in_use = sessions_in_use(store.root.parent)
    in_use = {c for c in in_use if spec.DIGEST.match(c)}
    report = GcReport()
    if not store.root.exists():
        return report
    store.ensure()
    with store.lock("gc.lock", fcntl.LOCK_EX):
        keep_blobs: set[str] = set()
        keep_chains: set[str] = set()
        for desc in store.refs().values():
            manifest = store.read_json(desc["digest"])
            config = store.read_json(manifest["config"]["digest"])
            keep_blobs.update([desc["digest"], manifest["config"]["digest"]])
            keep_blobs.update(layer["digest"] for layer in manifest.get("layers", []))
            keep_chains.update(spec.chain_ids(config.get("rootfs", {}).get("diff_ids", [])))
        report.kept_in_use = sorted(set(in_use) - keep_chains)
        keep_chains |= set(in_use)
        for entry in store.cache_dir.glob("*.json"):
            layer = json.loads(entry.read_bytes()).get("layer", {})
            if layer.get("digest") not in keep_blobs:
                entry.unlink()
        for blob in store.blobs.iterdir():
            if f"sha256:{blob.name}" not in keep_blobs:
                report.bytes += blob.stat().st_size
                blob.unlink()
                report.blobs += 1
        keep_hex = {spec.hexof(c) for c in keep_chains}
        for entry in store.layers_dir.iterdir():
            if entry.name == "l" or entry.name in keep_hex:
                continue
            shutil.rmtree(entry, ignore_errors=True)  # also crashed .tmp-* unpacks
            report.layers += 0 if entry.name.startswith(".tmp-") else 1
        for link in (store.layers_dir / "l").iterdir():
            if not link.exists():
                link.unlink()  # dangling: its layer is gone
        for entry in store.tmp.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
    return report

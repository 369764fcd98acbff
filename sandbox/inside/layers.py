"""The layer stack a sandbox runs on, read from what its snapshot recorded."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.exceptions import SandboxError
from sandbox.images.store import ImageStore, Layer
from sandbox.snapshots import Layout


@dataclass(frozen=True)
class Stack:
    """The image a sandbox was started from: its config, layers bottom -> top."""

    ref: str
    config_digest: str
    manifest_digest: str
    layers: list[Layer]
    created_by: list[str]
    dirs: list[Path]

    def view(self) -> list[dict[str, Any]]:
        """The layers as the API shows them, bottom -> top."""
        return [{"diff_id": layer.diff_id, "chain_id": layer.chain_id, "size": layer.size,
                 "created_by": made_by} for layer, made_by in zip(self.layers, self.created_by)]


def session_stack(store: ImageStore, layout: Layout) -> Stack:
    """The stack recorded in the session's /var/lib/lab/image.json when it started."""
    try:
        inspect = json.loads((layout.views / "image.json").read_text())
    except (OSError, ValueError):
        raise SandboxError("沙箱不在这台主机上运行。This sandbox is not running here (no image record in its session directory).") from None
    manifest_digest = inspect["Lab"]["ManifestDigest"]
    manifest = store.read_json(manifest_digest)
    diff_ids = inspect["RootFS"]["Layers"]
    chains = inspect["Lab"]["ChainIDs"]
    layers = [Layer(d["digest"], d["size"], d["mediaType"], diff, chain)
              for d, diff, chain in zip(manifest["layers"], diff_ids, chains)]
    made = [h.get("created_by", "") for h in inspect.get("History", []) if not h.get("empty_layer")]
    if len(made) != len(layers):
        made = [""] * len(layers)
    dirs = [store.layer_dir(c) / "diff" for c in chains]
    # With its own uid range the session sees the layers through idmapped mounts: read
    # them there, so owners compare with the upperdir's (copy-up keeps the owner).
    mapped = [layout.lowers / str(i) for i in range(len(chains))]
    if all(d.is_dir() for d in mapped) and mapped:
        dirs = mapped
    return Stack(ref=(inspect.get("RepoTags") or [""])[0], config_digest=inspect["Id"],
                 manifest_digest=manifest_digest, layers=layers, created_by=made, dirs=dirs)

"""Build an image from a YAML recipe: every step that changes files is one layer.

    tag: lab/base:latest
    from: scratch            # or name:tag, an OCI layout dir, a docker-save .tar
    steps:
      - busybox: {}
      - copy: {src: base/, dest: /}
      - run: "echo hi > /etc/hi"     # runs in a build sandbox (sandbox.build)
      - env: {PATH: /usr/bin:/bin}    # config only: env, workdir, cmd, entrypoint, user, labels
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from sandbox.images import spec, steps
from sandbox.images.changeset import create_layer
from sandbox.images.exceptions import ImageError, RecipeError
from sandbox.images.store import Image, ImageStore, Layer

LAYER_STEPS = ("busybox", "copy", "run")
CONFIG_STEPS = ("env", "workdir", "cmd", "entrypoint", "user", "labels")
EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
CACHE_VERSION = 1

Progress = Callable[[str], None]


@dataclass
class Step:
    """One parsed recipe step and where it was written."""

    kind: str
    args: Any
    where: str


@dataclass
class _State:
    """The image as the build has made it so far."""

    layers: list[Layer] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    created: str = EPOCH

    @property
    def chain_id(self) -> str | None:
        """The top layer's chain_id, None for an empty image."""
        return self.layers[-1].chain_id if self.layers else None


def _now() -> str:
    """The current time as an RFC 3339 UTC timestamp."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_recipe(path: Path) -> tuple[dict[str, Any], list[Step]]:
    """Parse a recipe, remembering file:line of each step for error messages."""
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc}") from exc
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with `from:` and `steps:`.")
    unknown = set(data) - {"tag", "from", "steps", "description"}
    if unknown:
        raise RecipeError(f"{path}: unknown keys {sorted(unknown)}; expected tag, from, steps.")
    raw_steps = data.get("steps") or []
    lines = [1] * len(raw_steps)
    for key, value in node.value:
        if key.value == "steps" and isinstance(value, yaml.SequenceNode):
            lines = [item.start_mark.line + 1 for item in value.value]
    if not isinstance(raw_steps, list):
        raise RecipeError(f"{path}: `steps` must be a list.")
    parsed = []
    for i, (raw, line) in enumerate(zip(raw_steps, lines), 1):
        where = f"{path}:{line}: step {i}"
        if not isinstance(raw, dict) or len(raw) != 1:
            raise RecipeError(f"{where}: each step is one `kind: args` pair, e.g. `- copy: {{src: a, dest: /a}}`.")
        kind, args = next(iter(raw.items()))
        if kind not in LAYER_STEPS + CONFIG_STEPS:
            raise RecipeError(f"{where}: unknown step {kind!r}; use one of {', '.join(LAYER_STEPS + CONFIG_STEPS)}.")
        parsed.append(Step(kind, args, where))
    return data, parsed


def _base(value: Any, recipe_dir: Path, store: ImageStore, progress: Progress) -> _State:
    """The starting point named by `from:`."""
    state = _State(config={"Env": [f"{k}={v}" for k, v in DEFAULT_ENV.items()]})
    if value in (None, "scratch"):
        return state
    text = str(value)
    path = recipe_dir / text
    if path.exists():
        from sandbox.images import oci

        progress(f"from {text}: importing")
        config, layers = oci.read_image(path, store)
    else:
        image = store.resolve(text)
        config, layers = image.config, image.layers
    state.layers = list(layers)
    state.history = list(config.get("history", []))
    state.config = dict(config.get("config", {}))
    state.created = config.get("created", EPOCH)
    return state


def _config_step(state: _State, step: Step) -> str:
    """Apply a config-only step; return its history text."""
    args, cfg = step.args, state.config
    if step.kind == "env":
        if not isinstance(args, dict):
            raise RecipeError(f"{step.where}: env takes a mapping NAME: value.")
        env = dict(e.split("=", 1) for e in cfg.get("Env", []))
        env.update({str(k): str(v) for k, v in args.items()})
        cfg["Env"] = [f"{k}={v}" for k, v in env.items()]
        return "env: " + " ".join(f"{k}={v}" for k, v in args.items())
    if step.kind == "labels":
        if not isinstance(args, dict):
            raise RecipeError(f"{step.where}: labels takes a mapping name: value.")
        cfg["Labels"] = {**cfg.get("Labels", {}), **{str(k): str(v) for k, v in args.items()}}
        return "labels: " + " ".join(f"{k}={v}" for k, v in args.items())
    if step.kind in ("cmd", "entrypoint"):
        argv = ["/bin/sh", "-c", args] if isinstance(args, str) else args
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise RecipeError(f"{step.where}: {step.kind} takes a list of strings or a shell string.")
        cfg["Cmd" if step.kind == "cmd" else "Entrypoint"] = argv
        return f"{step.kind}: {json.dumps(argv)}"
    if not isinstance(args, (str, int)):
        raise RecipeError(f"{step.where}: {step.kind} takes a string.")
    cfg["WorkingDir" if step.kind == "workdir" else "User"] = str(args)
    return f"{step.kind}: {args}"


def _step_inputs(step: Step, recipe_dir: Path, state: _State) -> str:
    """What a layer step depends on, beyond its own text."""
    if step.kind == "busybox":
        return steps.busybox_inputs(step.args or {})[0]
    if step.kind == "copy":
        return steps.copy_inputs(steps.copy_source(step.args, recipe_dir)[0])
    return spec.canonical_json(state.config).decode()  # run: env and workdir matter


def _make_layer(step: Step, recipe_dir: Path, store: ImageStore, state: _State,
                progress: Progress) -> tuple[Layer, str]:
    """Run one layer step for real; return its layer and history text."""
    with store.tempdir("step-") as work:
        staging = work / "rootfs"
        staging.mkdir()
        if step.kind == "busybox":
            created_by = steps.stage_busybox(step.args or {}, staging)
            uid_base = 0
        elif step.kind == "copy":
            src, dest = steps.copy_source(step.args, recipe_dir)
            steps.stage_copy(src, dest, staging)
            created_by = f"copy: {step.args['src']} -> {dest}"
            uid_base = 0
        else:
            staging, created_by = _run_step(step, store, state, work, progress)
            uid_base = store.uid_base
        tar = work / "layer.tar"
        with open(tar, "wb") as out:
            create_layer(staging, out, uid_base=uid_base, id_count=store.id_count)
        layer = store.add_layer(tar, state.chain_id)
    return layer, created_by


def _run_step(step: Step, store: ImageStore, state: _State, work: Path,
              progress: Progress) -> tuple[Path, str]:
    """`run:` a shell command in a build sandbox; its upperdir is the new layer."""
    if not isinstance(step.args, str):
        raise RecipeError(f"{step.where}: run takes a shell command string.")
    from sandbox.build import run_build_step  # runc; imported only when a recipe runs

    lowers = [store.layer_dir(layer.chain_id) / "diff" for layer in state.layers]
    upper = run_build_step(command=step.args, lowerdirs=list(reversed(lowers)), workdir=work,
                           config=state.config, uid_base=store.uid_base, progress=progress)
    return Path(upper), f"run: /bin/sh -c {step.args}"


def build(recipe: Path, store: ImageStore, *, tag: str | None = None,
          progress: Progress | None = None) -> Image:
    """Build a recipe into the store and tag it; unchanged steps reuse cached layers."""
    say: Progress = progress or (lambda _msg: None)
    recipe = Path(recipe).absolute()
    data, parsed = load_recipe(recipe)
    ref = tag or data.get("tag")
    if not ref:
        raise RecipeError(f"{recipe}: no tag; add `tag: name:tag` to the recipe or pass --tag.")
    ref = spec.normalize_ref(str(ref))
    with store.writing():
        try:
            state = _base(data.get("from"), recipe.parent, store, say)
        except ImageError as exc:
            raise RecipeError(f"{recipe}: from {data.get('from')!r}: {exc}") from exc
        for n, step in enumerate(parsed, 1):
            label = f"step {n}/{len(parsed)} {step.kind}"
            try:
                if step.kind in CONFIG_STEPS:
                    created_by = _config_step(state, step)
                    state.history.append({"created": state.created, "created_by": created_by,
                                          "empty_layer": True})
                    say(f"{label}: config")
                    continue
                _layer_step(step, recipe.parent, store, state, say, label)
            except (ImageError, OSError) as exc:
                if str(exc).startswith(step.where):
                    raise
                output = getattr(exc, "output", "")
                raise RecipeError(f"{step.where} ({step.kind}) failed: {exc}"
                                  + (f"\n{output}" if output else "")) from exc
        config = {
            "created": state.created,
            "architecture": spec.host_architecture(),
            "os": "linux",
            "config": state.config,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in state.layers]},
            "history": state.history,
        }
        image = store.commit(ref, config, state.layers)
    say(f"built {ref} {image.id[:19]} ({len(image.diff_ids)} layers)")
    return image


def _layer_step(step: Step, recipe_dir: Path, store: ImageStore, state: _State,
                say: Progress, label: str) -> None:
    """A layer step: reuse the cached layer for the same parent and inputs, else make it."""
    key_obj = {"v": CACHE_VERSION, "parent": state.chain_id, "kind": step.kind,
               "args": step.args, "inputs": _step_inputs(step, recipe_dir, state)}
    key = hashlib.sha256(spec.canonical_json(key_obj)).hexdigest()
    entry_path = store.cache_dir / f"{key}.json"
    layer = None
    if entry_path.exists():
        entry = json.loads(entry_path.read_bytes())
        cached = Layer(**entry["layer"])
        if store.blob_path(cached.digest).exists():
            store.ensure_unpacked(cached.chain_id, cached.diff_id, cached.digest)
            layer, created, created_by = cached, entry["created"], entry["created_by"]
            say(f"{label}: cached {layer.diff_id[:19]}")
    if layer is None:
        layer, created_by = _make_layer(step, recipe_dir, store, state, say)
        created = _now()
        entry = {"layer": layer.__dict__, "created": created, "created_by": created_by}
        store.put_cache(entry_path, entry)
        say(f"{label}: {layer.diff_id[:19]}")
    state.layers.append(layer)
    state.created = created
    state.history.append({"created": created, "created_by": created_by})


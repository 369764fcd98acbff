"""Finding lab directories and loading them: the entry points of labs.labfile."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from labs.labfile.reader import Reader, line_of
from labs.labfile.spec import LAB_FILE, ImageResolver, LabError, LabFileError, LabSpec


def _lab_dir(path: Path) -> Path:
    return path.parent if path.name == LAB_FILE or path.is_file() else path


def lab_version(lab_dir: Path) -> str:
    """sha256 over every file of the lab (names and contents), to tell when to re-import."""
    digest = hashlib.sha256()
    for file in sorted(p for p in lab_dir.rglob("*") if p.is_file()):
        relative = file.relative_to(lab_dir).as_posix()
        if any(part.startswith(".") or part == "__pycache__" for part in relative.split("/")):
            continue
        digest.update(relative.encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


# Text a lab.yaml may hold once its aliases are expanded: anchors and aliases may share
# a script between steps, not multiply a large text (100 aliases of 512 KiB took 493 s).
MAX_EXPANDED_BYTES = 2 * 1024 * 1024


def expanded_size(root: Node) -> tuple[int, Node | None]:
    """Bytes of scalar text with every alias expanded (each node sized once), and the
    first node met twice (an alias), to point at in an error."""
    sizes: dict[int, int] = {}
    first_alias: list[Node] = []

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            if not first_alias:
                first_alias.append(node)
            return sizes[key]
        sizes[key] = 0  # a node that contains itself counts once
        if isinstance(node, ScalarNode):
            n = len(node.value)
        elif isinstance(node, SequenceNode):
            n = sum(size(child) for child in node.value)
        elif isinstance(node, MappingNode):
            n = sum(size(k) + size(v) for k, v in node.value)
        else:
            n = 0
        sizes[key] = n
        return n

    return size(root), (first_alias[0] if first_alias else None)


def _compose(file: Path) -> tuple[Node | None, list[LabError]]:
    """Parse lab.yaml into nodes; syntax errors come back with their position."""
    data = file.read_bytes()
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [LabError(file, line_of(data, exc.start), 1, "not valid UTF-8")]
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            context = exc.context_mark
            at = f" at line {context.line + 1}, column {context.column + 1}" if context else ""
            message += f" ({exc.context}{at})"
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [LabError(file, line, column, message)]
    except yaml.YAMLError as exc:  # reader errors: control characters and the like
        position = getattr(exc, "position", 0)
        return None, [LabError(file, source.count("\n", 0, position) + 1, 1, f"YAML error: {exc}")]
    if root is not None:
        total, alias = expanded_size(root)
        if total > MAX_EXPANDED_BYTES:
            mark = alias.start_mark if alias is not None else root.start_mark
            why = "aliases expand this file to" if alias is not None else "this file holds"
            return None, [LabError(file, mark.line + 1, mark.column + 1,
                                   f"{why} {total // 1024} KiB of text, more than {MAX_EXPANDED_BYTES // 1024} KiB"
                                   + (": use fewer aliases of large anchors" if alias is not None else ""))]
    return root, []


def load_lab(path: Path, *, image_resolver: ImageResolver | None = None) -> LabSpec:
    """Load a lab directory (or its lab.yaml); raise LabFileError with every error found."""
    lab_dir = _lab_dir(Path(path))
    file = lab_dir / LAB_FILE
    if not file.is_file():
        raise LabFileError([LabError(file, 1, 1, "lab.yaml not found: a lab is a directory with a lab.yaml")])
    root, errors = _compose(file)
    if errors:
        raise LabFileError(errors)
    reader = Reader(lab_dir, file)
    spec = reader.lab(root, image_resolver)
    if reader.errors or spec is None:
        # lab.yaml first, then the Markdown files, each in reading order.
        raise LabFileError(sorted(reader.errors, key=lambda e: (e.file != file, str(e.file), e.line, e.column)))
    return replace(spec, version=lab_version(lab_dir))


def discover_labs(root: Path) -> list[Path]:
    """Lab directories under `root` (`root` itself if it holds a lab.yaml)."""
    root = _lab_dir(Path(root))
    if (root / LAB_FILE).is_file():
        return [root]
    return sorted(
        file.parent for file in root.rglob(LAB_FILE)
        if not any(part.startswith(".") for part in file.relative_to(root).parts)
    )


def validate_labs(paths: Iterable[Path], *, image_resolver: ImageResolver | None = None
                  ) -> tuple[list[LabSpec], list[LabError]]:
    """Load every lab under `paths`; return the good ones and all errors (incl. duplicate slugs)."""
    specs: list[LabSpec] = []
    errors: list[LabError] = []
    for path in paths:
        found = discover_labs(Path(path))
        if not found:
            errors.append(LabError(Path(path), 1, 1, "no lab found: expected a lab directory with a lab.yaml"))
        for lab_dir in found:
            try:
                specs.append(load_lab(lab_dir, image_resolver=image_resolver))
            except LabFileError as exc:
                errors.extend(exc.errors)
    first: dict[str, LabSpec] = {}
    for spec in specs:
        if spec.slug in first and first[spec.slug].path != spec.path:
            file = spec.path / LAB_FILE
            errors.append(LabError(file, _slug_line(file), 1,
                                   f"slug: duplicate slug '{spec.slug}' (also in {first[spec.slug].path / LAB_FILE})"))
        first.setdefault(spec.slug, spec)
    return specs, errors


def _slug_line(file: Path) -> int:
    lines = file.read_text(encoding="utf-8").splitlines()
    return next((n for n, line in enumerate(lines, start=1) if line.startswith("slug:")), 1)


def course_order(specs: list[LabSpec]) -> list[LabSpec]:
    """Labs in teaching order: every lab after its prerequisites; among those ready,
    beginner before intermediate before advanced, then as discovered."""
    from labs.labfile.spec import LEVELS

    placed: list[LabSpec] = []
    done: set[str] = set()
    pending = list(specs)
    known = {s.slug for s in specs}
    while pending:
        ready = [s for s in pending if all(p in done or p not in known for p in s.prerequisites)]
        if not ready:  # a cycle (validate reports it elsewhere): keep the rest as found
            ready = pending
        nxt = min(ready, key=lambda s: (LEVELS.index(s.level) if s.level in LEVELS else len(LEVELS), pending.index(s)))
        placed.append(nxt)
        done.add(nxt.slug)
        pending.remove(nxt)
    return placed

"""Editing a lab in place, in the browser: its lab.yaml and step Markdown, checked as they
are typed (the lab JSON Schema, labs/schema/lab.schema.json, and the loader's own checks,
each error at its file, line and column), a rendered preview of a step, and Save, which
keeps the edited files as the lab's next version exactly as an upload would."""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import replace
from functools import lru_cache
from pathlib import Path, PurePosixPath

import yaml
from django.contrib.auth.models import AbstractBaseUser
from jsonschema import Draft202012Validator

from labs.authoring import labs_root, version_store
from labs.exceptions import BadRequest
from labs.labfile import LAB_FILE, LabFileError, load_lab, validate_labs
from labs.markdown import render_markdown
from labs.models import Lab, LabVersion

SCHEMA = Path(__file__).resolve().parent / "schema" / "lab.schema.json"
EDITABLE = (".yaml", ".yml", ".md")
MAX_TOTAL = 1024 * 1024


@lru_cache(maxsize=1)
def lab_schema() -> dict:
    """The lab JSON Schema the editor is fed (completion) and checks with."""
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def _source(lab: Lab) -> Path:
    """The files to start from: the newest version's, or (a lab imported from the command line) its directory."""
    newest = lab.versions.order_by("-number").first()
    path = Path(newest.path) if newest else Path(lab.source)
    if not (path / LAB_FILE).is_file():
        raise BadRequest(f"the files of lab {lab.slug!r} are not on this server")
    return path


def edit_files(*, lab: Lab) -> dict:
    """{"version": newest version number or None, "files": {path: text}} of the editable files."""
    source = _source(lab)
    files = {}
    for path in sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in EDITABLE):
        files[path.relative_to(source).as_posix()] = path.read_text(encoding="utf-8", errors="replace")
    newest = lab.versions.order_by("-number").first()
    return {"version": newest.number if newest else None, "files": files}


def _clean(files: object) -> dict[str, str]:
    """The posted files: relative paths inside the lab, Markdown or YAML, text, within MAX_TOTAL."""
    if not isinstance(files, dict) or not files:
        raise BadRequest("files: expected an object {path: text}")
    total, out = 0, {}
    for name, text in files.items():
        path = PurePosixPath(str(name))
        if path.is_absolute() or ".." in path.parts or not path.parts or path.suffix.lower() not in EDITABLE:
            raise BadRequest(f"{name}: only the lab's own .yaml and .md files can be edited")
        if not isinstance(text, str):
            raise BadRequest(f"{name}: expected text")
        total += len(text.encode())
        out[path.as_posix()] = text
    if total > MAX_TOTAL:
        raise BadRequest(f"files: more than {MAX_TOTAL // 1024} KiB of text")
    return out


def _workdir(lab: Lab, files: dict[str, str]) -> tuple[Path, Path]:
    """(temporary dir, lab dir inside it): the lab's files with the edited ones written over them."""
    labs_root().mkdir(parents=True, exist_ok=True)  # a server where nobody has uploaded a lab yet
    work = Path(tempfile.mkdtemp(prefix=".edit-", dir=labs_root()))
    lab_dir = work / "lab"
    shutil.copytree(_source(lab), lab_dir)
    for name, text in files.items():
        target = lab_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return work, lab_dir


def _node_at(node, path) -> object:
    """The YAML node at a JSON path (keys and indexes), as deep as it goes."""
    for key in path:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == key), None)
            if found is None:
                break
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
    return node


def schema_diagnostics(text: str) -> list[dict]:
    """lab.yaml checked against the lab JSON Schema, each error at its node's line and column."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return []  # the loader reports the syntax error with its position
    if root is None:
        return []
    out = []
    for error in Draft202012Validator(lab_schema()).iter_errors(data):
        node = _node_at(root, error.absolute_path)
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        out.append({"file": LAB_FILE, "line": node.start_mark.line + 1, "column": node.start_mark.column + 1,
                    "message": f"schema: {where}: {error.message}", "source": "schema"})
    return out


def edit_check(*, lab: Lab, files: object) -> list[dict]:
    """Every problem of the edited lab: the schema's and the loader's, by file, line and column."""
    files = _clean(files)
    work, lab_dir = _workdir(lab, files)
    try:
        try:
            load_lab(lab_dir)
            errors = []
        except LabFileError as exc:
            errors = exc.errors
        out = [{"file": Path(e.file).resolve().relative_to(lab_dir.resolve()).as_posix()
                if Path(e.file).resolve().is_relative_to(lab_dir.resolve()) else str(e.file),
                "line": e.line, "column": e.column, "message": e.message, "source": "loader"} for e in errors]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if LAB_FILE in files:
        seen = {(d["line"], d["file"]) for d in out}
        out += [d for d in schema_diagnostics(files[LAB_FILE]) if (d["line"], d["file"]) not in seen]
    return sorted(out, key=lambda d: (d["file"] != LAB_FILE, d["file"], d["line"], d["column"]))


def edit_preview(*, markdown: object) -> str:
    """A step's Markdown as the lab page renders it (sanitised)."""
    if not isinstance(markdown, str) or len(markdown) > MAX_TOTAL:
        raise BadRequest("markdown: expected a text")
    return render_markdown(markdown)


def edit_save(*, user: AbstractBaseUser, lab: Lab, files: object) -> tuple[LabVersion, bool]:
    """Keep the edited files as the lab's next version (validated as an upload is)."""
    files = _clean(files)
    work, lab_dir = _workdir(lab, files)
    try:
        specs, errors = validate_labs([lab_dir])
        if errors:
            raise BadRequest("\n".join(str(e).replace(str(lab_dir) + "/", "") for e in errors))
        if specs[0].slug != lab.slug:
            raise BadRequest(f"lab.yaml: slug: the editor keeps the slug {lab.slug!r}; upload to make another lab")
        return version_store(user=user, spec=replace(specs[0], path=lab_dir))
    finally:
        shutil.rmtree(work, ignore_errors=True)

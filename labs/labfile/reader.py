"""Walks the composed YAML nodes of a lab.yaml into a LabSpec, collecting positioned errors."""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from urllib.parse import unquote

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from labs.labfile.spec import (
    DEFAULT_IMAGE, LANGS, LEVELS, QUIZ_KINDS, Hint, ImageResolver, LabError, LabSpec, Limits, Quiz,
    QuizChoice, Step, Text, WrongAnswer,
)
from labs.markdown import relative_links
from sandbox.runtime import LIMIT_RANGES as SANDBOX_LIMIT_RANGES

ID_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
IMAGE_RE = re.compile(r"[a-z0-9][a-z0-9._/-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")

_TAG = "tag:yaml.org,2002:"
_KINDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean", "null": "nothing (null)"}
_SCALARS = SafeConstructor()

# Keys of each mapping: name -> required.
LAB_KEYS = {
    "slug": True, "title": True, "summary": False, "level": False, "minutes": False, "image": False,
    "limits": False, "setup": False, "tags": False, "prerequisites": False, "steps": True,
}
STEP_KEYS = {
    "id": True, "title": True, "text": False, "text_file": False, "setup": False, "check": False,
    "solution": False, "hints": False, "auto_check": False, "check_timeout": False, "quiz": False,
    "wrong": False,
}
WRONG_KEYS = {"script": True, "why": True}
QUIZ_KEYS = {"kind": True, "question": True, "choices": False, "pattern": False, "explanation": False}
CHOICE_KEYS = {"id": True, "text": True, "correct": False}
# The sandbox's per-session ranges (docs/security.md, *Aggregate caps*), and the web's.
LIMIT_RANGES: dict[str, tuple[float, float]] = {
    **SANDBOX_LIMIT_RANGES, "lifetime_minutes": (1, 1440), "idle_minutes": (1, 1440),
}


def kind_of(node: Node) -> str:
    """How a YAML node reads in an error message: 'a list', 'an integer', ..."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return _KINDS.get(node.tag.removeprefix(_TAG), f"a {node.tag} value")


def _where(path: str) -> str:
    return f"{path}: " if path else ""


class Reader:
    """Builds a LabSpec from YAML nodes, collecting errors instead of stopping at the first."""

    def __init__(self, lab_dir: Path, file: Path) -> None:
        self.lab_dir = lab_dir
        self.file = file
        self.errors: list[LabError] = []

    def error(self, node: Node, message: str, file: Path | None = None) -> None:
        mark = node.start_mark
        self.errors.append(LabError(file or self.file, mark.line + 1, mark.column + 1, message))

    # -- generic shapes ------------------------------------------------------------------

    def mapping(self, node: Node, path: str, keys: dict[str, bool]) -> dict[str, Node] | None:
        """The mapping's values by key; reports unknown, duplicate and missing keys."""
        if not isinstance(node, MappingNode):
            self.error(node, f"{_where(path)}expected a mapping, got {kind_of(node)}")
            return None
        values: dict[str, Node] = {}
        key_nodes: dict[str, Node] = {}
        for key_node, value in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                self.error(key_node, f"{_where(path)}expected a key name, got {kind_of(key_node)}")
            elif key in key_nodes:
                first = key_nodes[key].start_mark.line + 1
                self.error(key_node, f"{_where(path)}duplicate key '{key}' (first at line {first})")
            elif key not in keys:
                key_nodes[key] = key_node
                close = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.6) or [
                    known for known in keys if known.startswith(key) or key.startswith(known)]
                suggestion = f"did you mean '{close[0]}'?" if close else "expected one of " + ", ".join(keys)
                self.error(key_node, f"{_where(path)}unknown key '{key}' ({suggestion})")
            else:
                key_nodes[key] = key_node
                values[key] = value
        for key, required in keys.items():
            if required and key not in key_nodes:
                self.error(node, f"{_where(path)}missing required key '{key}'")
        return values

    def sequence(self, node: Node, path: str, what: str) -> list[Node]:
        if isinstance(node, SequenceNode):
            return list(node.value)
        self.error(node, f"{path}: expected a list of {what}, got {kind_of(node)}")
        return []

    def string(self, node: Node, path: str, what: str = "a string") -> str | None:
        if isinstance(node, ScalarNode) and node.tag == _TAG + "str":
            return node.value
        quote = ' (put it in quotes to make it a string)' if isinstance(node, ScalarNode) and node.value else ""
        self.error(node, f"{path}: expected {what}, got {kind_of(node)}{quote}")
        return None

    def script(self, node: Node | None, path: str) -> str | None:
        if node is None:
            return None
        value = self.string(node, path, "a shell script (a string)")
        if value is not None and not value.strip():
            self.error(node, f"{path}: the script is empty (leave the key out instead)")
        return value or None

    def identifier(self, node: Node, path: str, what: str) -> str | None:
        value = self.string(node, path, what)
        if value is not None and not ID_RE.fullmatch(value):
            self.error(node, f"{path}: invalid {what} '{value}': use lowercase letters, digits and '-'")
        return value

    def number(self, node: Node | None, path: str, default, low: float, high: float, *, real: bool = False):
        if node is None:
            return default
        tags = ("int", "float") if real else ("int",)
        if not (isinstance(node, ScalarNode) and node.tag.removeprefix(_TAG) in tags):
            self.error(node, f"{path}: expected {'a number' if real else 'an integer'}, got {kind_of(node)}")
            return default
        value = _SCALARS.construct_yaml_float(node) if real else _SCALARS.construct_yaml_int(node)
        if not low <= value <= high:
            self.error(node, f"{path}: {value:g} is out of range ({low:g} to {high:g})")
            return default
        return value

    def boolean(self, node: Node | None, path: str, default: bool) -> bool:
        if node is None:
            return default
        if isinstance(node, ScalarNode) and node.tag == _TAG + "bool":
            return bool(_SCALARS.construct_yaml_bool(node))
        self.error(node, f"{path}: expected true or false, got {kind_of(node)}")
        return default

    def choice(self, node: Node | None, path: str, options: tuple[str, ...], default: str) -> str:
        if node is None:
            return default
        value = self.string(node, path, "one of " + ", ".join(options))
        if value is not None and value not in options:
            self.error(node, f"{path}: expected one of {', '.join(options)}, got '{value}'")
        return value if value in options else default

    # -- text and Markdown ---------------------------------------------------------------

    def text(self, node: Node | None, path: str, *, markdown: bool = False) -> Text:
        """A bilingual value: a string (both languages) or a mapping with zh-hans/en."""
        if node is None:
            return Text()
        if isinstance(node, ScalarNode) and node.tag == _TAG + "str":
            result = Text(node.value, node.value)
        elif isinstance(node, MappingNode):
            values = self.mapping(node, path, dict.fromkeys(LANGS, False)) or {}
            strings = {lang: self.string(value, f"{path}.{lang}") or "" for lang, value in values.items()}
            result = Text(strings.get("zh-hans", ""), strings.get("en", ""))
        else:
            self.error(node, f"{path}: expected a mapping with zh-hans/en or a string, got {kind_of(node)}")
            return Text()
        if not (result.zh_hans.strip() or result.en.strip()):
            self.error(node, f"{path}: the text is empty")
        if markdown:
            for lang_text in {result.zh_hans, result.en}:
                self.check_links(lang_text, self.lab_dir, node, self.file, _where(path))
        return result

    def text_files(self, node: Node, path: str) -> Text:
        """`text_file: steps/01.md` -> steps/01.zh-hans.md and steps/01.en.md (or steps/01.md)."""
        relative = self.string(node, path, "a path to a Markdown file")
        if relative is None:
            return Text()
        if not relative.endswith(".md") or relative.startswith("/"):
            self.error(node, f"{path}: expected a relative path ending in .md, got '{relative}'")
            return Text()
        if not _inside(self.lab_dir / relative, self.lab_dir):
            self.error(node, f"{path}: '{relative}' is outside the lab directory")
            return Text()
        stem = relative[: -len(".md")]
        texts = {lang: self.markdown_file(f"{stem}.{lang}.md", node) for lang in LANGS}
        texts = {lang: text for lang, text in texts.items() if text is not None}
        if not texts:
            plain = self.markdown_file(relative, node)
            if plain is None:
                self.error(node, f"{path}: Markdown file not found: expected {stem}.zh-hans.md and/or "
                                 f"{stem}.en.md (or {relative} for both languages)")
                return Text()
            texts = dict.fromkeys(LANGS, plain)
        return Text(texts.get("zh-hans", ""), texts.get("en", ""))

    def markdown_file(self, relative: str, node: Node) -> str | None:
        """Read one Markdown file of the lab and check its links; None if it doesn't exist."""
        file = self.lab_dir / relative
        if not file.is_file():
            return None
        try:
            source = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            self.errors.append(LabError(file, line_of(file.read_bytes(), exc.start), 1, "not valid UTF-8"))
            return ""
        self.check_links(source, file.parent, None, file)
        return source

    def check_links(self, source: str, base: Path, at: Node | None, file: Path, prefix: str = "") -> None:
        """Report relative links/images whose file is missing or outside the lab."""
        for link in relative_links(source):
            target = base / unquote(link.target.split("#", 1)[0].split("?", 1)[0])
            what = "image" if link.image else "link"
            if not _inside(target, self.lab_dir):
                problem = f"{what} target '{link.target}' is outside the lab directory"
            elif not target.exists():
                problem = f"{what} target '{link.target}' not found (looked for {_show(target, self.lab_dir)})"
            else:
                continue
            if at is not None:  # inline YAML text: the scalar's position
                self.error(at, prefix + problem, file)
            else:
                self.errors.append(LabError(file, link.line, link.column, problem))

    # -- the lab -------------------------------------------------------------------------

    def lab(self, root: Node | None, image_resolver: ImageResolver | None) -> LabSpec | None:
        if root is None:
            self.errors.append(LabError(self.file, 1, 1, "the file is empty: expected a mapping with slug, title, steps"))
            return None
        values = self.mapping(root, "", LAB_KEYS)
        if values is None:
            return None
        get = values.get
        image = DEFAULT_IMAGE
        if "image" in values:
            image = self.string(values["image"], "image", "an image reference like lab/base:latest") or DEFAULT_IMAGE
            if not IMAGE_RE.fullmatch(image):
                self.error(values["image"], f"image: invalid image reference '{image}' (expected name[:tag])")
                image_resolver = None
        if image_resolver is not None:
            try:
                image_resolver(image)
            except Exception as exc:  # noqa: BLE001 - any store failure means "not available"
                self.error(values.get("image", root), f"image: '{image}' is not in the image store: {exc}")
        slug = self.identifier(values["slug"], "slug", "slug") if "slug" in values else ""
        prerequisites = tuple(
            self.identifier(item, f"prerequisites[{i}]", "lab slug") or ""
            for i, item in enumerate(self.sequence(get("prerequisites"), "prerequisites", "lab slugs"))
        ) if "prerequisites" in values else ()
        if slug and slug in prerequisites:
            self.error(get("prerequisites"), f"prerequisites: a lab cannot require itself ('{slug}')")
        return LabSpec(
            slug=slug or "",
            title=self.text(get("title"), "title"),
            summary=self.text(get("summary"), "summary", markdown=True),
            level=self.choice(get("level"), "level", LEVELS, "beginner"),
            minutes=self.number(get("minutes"), "minutes", 30, 1, 600),
            image=image,
            limits=self.limits(get("limits")),
            setup=self.script(get("setup"), "setup"),
            tags=tuple(
                self.string(item, f"tags[{i}]") or ""
                for i, item in enumerate(self.sequence(get("tags"), "tags", "strings"))
            ) if "tags" in values else (),
            prerequisites=prerequisites,
            steps=self.steps(get("steps")) if "steps" in values else (),
            path=self.lab_dir,
        )

    def limits(self, node: Node | None) -> Limits:
        if node is None:
            return Limits()
        keys = {**dict.fromkeys(LIMIT_RANGES, False), "network": False}
        values = self.mapping(node, "limits", keys) or {}
        defaults = Limits()
        numbers = {
            name: self.number(values.get(name), f"limits.{name}", getattr(defaults, name), low, high,
                              real=name == "cpu")
            for name, (low, high) in LIMIT_RANGES.items()
        }
        if numbers["idle_minutes"] > numbers["lifetime_minutes"]:
            self.error(values.get("idle_minutes", node), "limits.idle_minutes: longer than lifetime_minutes")
        return Limits(**numbers, network=self.boolean(values.get("network"), "limits.network", False))

    def steps(self, node: Node) -> tuple[Step, ...]:
        items = self.sequence(node, "steps", "steps")
        if isinstance(node, SequenceNode) and not items:
            self.error(node, "steps: a lab needs at least one step")
        steps: list[Step] = []
        seen: dict[str, Node] = {}
        for index, item in enumerate(items):
            step = self.step(item, f"steps[{index}]")
            if step is None:
                continue
            if step.id in seen:
                first = seen[step.id].start_mark.line + 1
                self.error(item, f"steps[{index}].id: duplicate step id '{step.id}' (first at line {first})")
            seen.setdefault(step.id, item)
            steps.append(step)
        return tuple(steps)

    def step(self, node: Node, path: str) -> Step | None:
        values = self.mapping(node, path, STEP_KEYS)
        if values is None:
            return None
        get = values.get
        if "text" in values and "text_file" in values:
            self.error(values["text_file"], f"{path}: use either text or text_file, not both")
        elif "text" not in values and "text_file" not in values:
            self.error(node, f"{path}: missing required key 'text' or 'text_file'")
        text = self.text_files(values["text_file"], f"{path}.text_file") if "text_file" in values else (
            self.text(get("text"), f"{path}.text", markdown=True))
        check = self.script(get("check"), f"{path}.check")
        solution = self.script(get("solution"), f"{path}.solution")
        auto_check = self.boolean(get("auto_check"), f"{path}.auto_check", False)
        if check and "solution" not in values:
            self.error(values["check"], f"{path}: a step with a check needs a solution "
                                        "(labs test runs it to prove the check can pass)")
        if auto_check and "check" not in values:
            self.error(values["auto_check"], f"{path}.auto_check: needs a check to run")
        if "wrong" in values and "check" not in values:
            self.error(values["wrong"], f"{path}.wrong: wrong answers need a check to refuse them")
        wrong = tuple(
            answer for i, item in enumerate(self.sequence(get("wrong"), f"{path}.wrong", "wrong answers"))
            if (answer := self.wrong_answer(item, f"{path}.wrong[{i}]")) is not None
        ) if "wrong" in values else ()
        hints = tuple(
            Hint(self.text(item, f"{path}.hints[{i}]", markdown=True))
            for i, item in enumerate(self.sequence(get("hints"), f"{path}.hints", "hints"))
        ) if "hints" in values else ()
        return Step(
            id=self.identifier(values["id"], f"{path}.id", "step id") or "" if "id" in values else "",
            title=self.text(get("title"), f"{path}.title"),
            text=text,
            setup=self.script(get("setup"), f"{path}.setup"),
            check=check,
            solution=solution,
            hints=hints,
            auto_check=auto_check,
            quiz=self.quiz(get("quiz"), f"{path}.quiz") if "quiz" in values else None,
            check_timeout=self.number(get("check_timeout"), f"{path}.check_timeout", 10, 1, 60),
            wrong=wrong,
        )

    def wrong_answer(self, node: Node, path: str) -> WrongAnswer | None:
        """`{script, why}`: what a trainee might run instead, and one line on why it is wrong."""
        values = self.mapping(node, path, WRONG_KEYS)
        if values is None:
            return None
        script = self.script(values.get("script"), f"{path}.script") if "script" in values else None
        why = self.text(values.get("why"), f"{path}.why")
        return WrongAnswer(script=script or "", why=why) if script else None

    def quiz(self, node: Node, path: str) -> Quiz | None:
        values = self.mapping(node, path, QUIZ_KEYS)
        if values is None:
            return None
        kind = self.choice(values.get("kind"), f"{path}.kind", QUIZ_KINDS, "")
        choices = tuple(
            choice for i, item in enumerate(self.sequence(values["choices"], f"{path}.choices", "choices"))
            if (choice := self.quiz_choice(item, f"{path}.choices[{i}]")) is not None
        ) if "choices" in values else ()
        pattern = self.string(values["pattern"], f"{path}.pattern", "a regular expression") \
            if "pattern" in values else None
        if kind == "text":
            if "choices" in values:
                self.error(values["choices"], f"{path}.choices: a text quiz has no choices (use pattern)")
            if "pattern" not in values:
                self.error(node, f"{path}: a text quiz needs a pattern (a regular expression for the answer)")
            elif pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    self.error(values["pattern"], f"{path}.pattern: invalid regular expression: {exc}")
        elif kind:
            if "pattern" in values:
                self.error(values["pattern"], f"{path}.pattern: only a text quiz has a pattern")
            correct = sum(choice.correct for choice in choices)
            at = values.get("choices", node)
            if "choices" not in values:
                self.error(node, f"{path}: a {kind}-choice quiz needs choices")
            elif not isinstance(at, SequenceNode) or len(choices) < len(at.value):
                pass  # reported already; which choices are correct is unknown
            elif len(at.value) < 2:
                self.error(at, f"{path}.choices: a {kind}-choice quiz needs at least two choices")
            elif correct == 0:
                self.error(at, f"{path}.choices: no choice is marked 'correct: true'")
            elif kind == "single" and correct > 1:
                self.error(at, f"{path}.choices: {correct} choices are correct in a single-choice quiz "
                               "(use kind: multiple)")
            ids = [choice.id for choice in choices]
            for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
                self.error(at, f"{path}.choices: duplicate choice id '{duplicate}'")
        return Quiz(
            kind=kind,
            question=self.text(values.get("question"), f"{path}.question"),
            choices=choices,
            pattern=pattern,
            explanation=self.text(values.get("explanation"), f"{path}.explanation", markdown=True),
        )

    def quiz_choice(self, node: Node, path: str) -> QuizChoice | None:
        values = self.mapping(node, path, CHOICE_KEYS)
        if values is None:
            return None
        return QuizChoice(
            id=self.identifier(values["id"], f"{path}.id", "choice id") or "" if "id" in values else "",
            text=self.text(values.get("text"), f"{path}.text"),
            correct=self.boolean(values.get("correct"), f"{path}.correct", False),
        )


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def _show(path: Path, lab_dir: Path) -> str:
    return str(path.resolve().relative_to(lab_dir.resolve()))


def line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


"""What a lab is once loaded: frozen dataclasses, and the errors loading can raise."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sandbox.runtime import Limits as SandboxLimits

LAB_FILE = "lab.yaml"
LANGS = ("zh-hans", "en")
LEVELS = ("beginner", "intermediate", "advanced")
QUIZ_KINDS = ("single", "multiple", "text")
DEFAULT_IMAGE = "lab/base:latest"


@dataclass(frozen=True)
class Text:
    """Text in Simplified Chinese and English."""

    zh_hans: str = ""
    en: str = ""

    def get(self, lang: str) -> str:
        """The text in `lang`, falling back to zh-hans, then en."""
        wanted = "en" if lang.lower().startswith("en") else "zh-hans"
        for candidate in (wanted, "zh-hans", "en"):
            value = self.zh_hans if candidate == "zh-hans" else self.en
            if value:
                return value
        return ""


@dataclass(frozen=True)
class Limits:
    """A lab file's `limits:` block. Not the same thing as the engine's
    sandbox.runtime.Limits (one sandbox's cgroups, PTYs and network): it adds the web's
    session policy (lifetime, idle) and lacks what a lab may not set; the engine's part
    is taken from it by sandbox.runtime.Limits.from_lab, and its defaults are the engine's."""

    memory_mb: int = SandboxLimits.memory_mb
    pids: int = SandboxLimits.pids
    cpu: float = SandboxLimits.cpu
    disk_mb: int = SandboxLimits.disk_mb
    lifetime_minutes: int = 120
    idle_minutes: int = 30
    network: bool = SandboxLimits.network


@dataclass(frozen=True)
class Hint:
    """One hint, shown on request, in order."""

    text: Text


@dataclass(frozen=True)
class QuizChoice:
    """One choice of a single/multiple-choice quiz."""

    id: str
    text: Text
    correct: bool


@dataclass(frozen=True)
class Quiz:
    """A "think about it" question attached to a step."""

    kind: str
    question: Text
    choices: tuple[QuizChoice, ...] = ()
    pattern: str | None = None
    explanation: Text = Text()

    def is_correct(self, answer: str | Iterable[str]) -> bool:
        """Grade an answer: a text (full match of `pattern`, stripped) or the chosen choice ids."""
        if self.kind == "text":
            return isinstance(answer, str) and re.fullmatch(self.pattern or "", answer.strip()) is not None
        chosen = {answer} if isinstance(answer, str) else set(answer)
        return chosen == {choice.id for choice in self.choices if choice.correct}


@dataclass(frozen=True)
class WrongAnswer:
    """A plausible wrong answer to a step: `labs test` proves the step's check refuses it."""

    script: str
    why: Text


@dataclass(frozen=True)
class Step:
    """One step of a lab: Markdown text, shell scripts run in the sandbox, hints, a quiz."""

    id: str
    title: Text
    text: Text
    setup: str | None = None
    check: str | None = None
    solution: str | None = None
    hints: tuple[Hint, ...] = ()
    auto_check: bool = False
    quiz: Quiz | None = None
    check_timeout: int = 10
    wrong: tuple[WrongAnswer, ...] = ()


@dataclass(frozen=True)
class LabSpec:
    """A validated lab, as written in its directory."""

    slug: str
    title: Text
    summary: Text
    level: str
    minutes: int
    image: str = DEFAULT_IMAGE
    limits: Limits = Limits()
    setup: str | None = None
    tags: tuple[str, ...] = ()
    prerequisites: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    path: Path = Path(".")
    version: str = ""


@dataclass
class LabError:
    """One problem in a lab file, at a 1-based line and column."""

    file: Path
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class LabFileError(Exception):
    """A lab failed to load; `errors` holds every problem found."""

    def __init__(self, errors: list[LabError]) -> None:
        super().__init__("\n".join(str(error) for error in errors))
        self.errors = errors


ImageResolver = Callable[[str], object]

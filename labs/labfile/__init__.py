"""Lab files: a directory with lab.yaml + Markdown, loaded into a LabSpec.

Validation walks the composed YAML nodes (not the constructed data), so every error
names the file, line and column, and everything wrong is reported at once.
"""
from __future__ import annotations

from labs.labfile.loader import course_order, discover_labs, lab_version, load_lab, validate_labs
from labs.labfile.spec import (
    DEFAULT_IMAGE, LAB_FILE, LANGS, LEVELS, QUIZ_KINDS, Hint, ImageResolver, LabError, LabFileError,
    LabSpec, Limits, Quiz, QuizChoice, Step, Text, WrongAnswer,
)

__all__ = [
    "course_order",
    "DEFAULT_IMAGE", "LAB_FILE", "LANGS", "LEVELS", "QUIZ_KINDS", "Hint", "ImageResolver", "LabError",
    "LabFileError", "LabSpec", "Limits", "Quiz", "QuizChoice", "Step", "Text", "WrongAnswer", "discover_labs",
    "lab_version", "load_lab", "validate_labs",
]

"""Routes of the learning experience: hints, solutions, quizzes, progress, preview."""
from __future__ import annotations

urlpatterns: list = []

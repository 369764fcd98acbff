"""The cohorts app: instructors' groups of trainees, their dashboards and the sandbox overview."""
from __future__ import annotations

from django.apps import AppConfig


class CohortsConfig(AppConfig):
    name = "cohorts"
    verbose_name = "Cohorts"

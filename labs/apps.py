"""The labs app: lessons, sessions, progress, the web and API around them."""
from __future__ import annotations

from django.apps import AppConfig


class LabsConfig(AppConfig):
    name = "labs"
    verbose_name = "Labs"

"""The labs app: lessons, sessions, progress, the web and API around them."""
from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LabsConfig(AppConfig):
    name = "labs"
    verbose_name = _("Labs")

    def ready(self) -> None:
        # Celery autodiscovers only labs.tasks; the authoring and inside features' tasks
        # live in their modules (inside also connects to labs.signals.step_passed).
        import labs.inside  # noqa: F401
        import labs.testruns  # noqa: F401

"""The cohorts app: instructors' groups of trainees, their dashboards and the sandbox overview."""
from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CohortsConfig(AppConfig):
    name = "cohorts"
    verbose_name = _("Cohorts")

    def ready(self) -> None:
        # Celery autodiscovers only labs.tasks: the dashboards' task is registered here.
        import cohorts.tasks  # noqa: F401
        from cohorts.selectors import session_watch_rule
        from labs.selectors import watch_rule_add

        # Instructors watch their cohorts' trainees: labs asks its rules, never cohorts.
        watch_rule_add(session_watch_rule)

"""Monitoring: Prometheus metrics at /metrics, counted in Redis so every process agrees."""
from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from monitoring import hooks

        # Events are counted where they happen (the worker's tasks), without labs
        # importing this app: Celery's own task signals carry them.
        hooks.connect()

"""Container Image Lab: the Django project."""
from __future__ import annotations

from labsite.celery import app as celery_app

__all__ = ("celery_app",)

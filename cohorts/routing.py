"""WebSocket routes of the cohorts app."""
from __future__ import annotations

from django.urls import re_path

from cohorts.consumers import DashboardConsumer

websocket_urlpatterns = [
    re_path(r"^ws/cohorts/(?P<cohort_id>[0-9]{1,12})/$", DashboardConsumer.as_asgi()),
]

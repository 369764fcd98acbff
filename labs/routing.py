"""WebSocket routes."""
from __future__ import annotations

from django.urls import re_path

from labs.consumers import TerminalConsumer

websocket_urlpatterns = [
    re_path(r"^ws/terminal/(?P<sid>[0-9a-f]{8,32})/$", TerminalConsumer.as_asgi()),
]

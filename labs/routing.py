"""WebSocket routes."""
from __future__ import annotations

from django.urls import re_path

from labs.consumers import TerminalConsumer
from labs.consumers_authoring import LabTestConsumer
from labs.consumers_tabs import TabConsumer

websocket_urlpatterns = [
    re_path(r"^ws/terminal/(?P<sid>[0-9a-f]{8,32})/$", TerminalConsumer.as_asgi()),
    re_path(r"^ws/terminal/(?P<sid>[0-9a-f]{8,32})/tabs/(?P<tab>[0-9]{1,2})/$", TabConsumer.as_asgi()),
    re_path(r"^ws/labs/(?P<slug>[a-z0-9-]{1,50})/versions/(?P<number>[0-9]{1,9})/test/$", LabTestConsumer.as_asgi()),
]

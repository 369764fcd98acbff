"""ASGI entry point: HTTP through Django (static files included), WebSockets through Channels."""
from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings.dev")
django_asgi = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from cohorts.routing import websocket_urlpatterns as cohort_routes  # noqa: E402
from labs.routing import websocket_urlpatterns  # noqa: E402
from labs.uploads import MAX_BYTES as UPLOAD_MAX_BYTES  # noqa: E402
from labsite.bodylimit import BodyLimit  # noqa: E402

# Lab archives up to their limit (plus the multipart envelope); every other body is small.
http = BodyLimit(ASGIStaticFilesHandler(django_asgi), default=4 * 2**20,
                 prefixes={"/labs/upload/": UPLOAD_MAX_BYTES + 2**20})

application = ProtocolTypeRouter({
    "http": http,
    "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns + cohort_routes))),
})

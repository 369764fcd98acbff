"""Security headers Django 5.2 does not set itself."""
from __future__ import annotations

from typing import Callable

from django.http import HttpRequest, HttpResponse

# Scripts only from our own static files (no inline script, no eval); the terminal
# WebSocket on the same host; lab images are files of the lab. xterm.js sets styles
# from script, hence 'unsafe-inline' for styles only.
CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


class SecurityHeadersMiddleware:
    """Adds a Content-Security-Policy to every HTML response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html"):
            response.setdefault("Content-Security-Policy", CSP)
            response.setdefault("Referrer-Policy", "same-origin")
        return response

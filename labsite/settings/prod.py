"""Production: secrets have no default, cookies are secure, hosts are explicit."""
from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from labsite.logs import logging_config
from labsite.settings.base import *  # noqa: F401,F403
from labsite.settings.base import LAB_HOST_NAME, LOG_FORMAT, LOG_LEVEL, log_secrets


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ImproperlyConfigured(f"{name} must be set in production")
    return value


SECRET_KEY = _required("SECRET_KEY")
ALLOWED_HOSTS = _required("ALLOWED_HOSTS").split(",")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_SSL_REDIRECT = os.environ.get("SECURE_SSL_REDIRECT", "1") == "1"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# One JSON object per line for the log pipeline (LOG_FORMAT=plain to read them by eye).
LOGGING = logging_config(fmt=LOG_FORMAT or "json", level=LOG_LEVEL, host=LAB_HOST_NAME, secrets=log_secrets())

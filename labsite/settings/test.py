"""Settings for the test suite: same parts, its own data directory and Redis db."""
from __future__ import annotations

from labsite.settings.base import *  # noqa: F401,F403
from labsite.settings.base import LAB_DATA_DIR

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_ROOT = LAB_DATA_DIR / "static"

"""Settings for the test suite: the same parts (Redis, runc, Celery), its own data dir.

The root conftest.py starts a private Redis and sets LAB_DATA_DIR / REDIS_URL /
LAB_HOST_NAME before this module is read. The SQLite test database is a file, so the
Celery worker and ASGI server the tests start in subprocesses share it.
"""
from __future__ import annotations

from labsite.settings.base import *  # noqa: F401,F403
from labsite.settings.base import DATABASES, LAB_DATA_DIR

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(LAB_DATA_DIR / "test-db.sqlite3")}

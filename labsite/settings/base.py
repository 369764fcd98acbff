"""Base settings. The only place that reads the environment.

Every value has a default that works on one machine with nothing configured
(SQLite, a private Redis on 127.0.0.1:6390, data under ./var); production sets
the environment (see docker-compose.yml and docs/operations.md).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env(name: str, default: str | None = None) -> str | None:
    """Read one setting from the environment."""
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    """Read an integer setting from the environment."""
    return int(os.environ.get(name, default))


DEBUG = False
SECRET_KEY = env("SECRET_KEY", "dev-only-insecure-key-do-not-use-in-production")
ALLOWED_HOSTS = [h for h in (env("ALLOWED_HOSTS", "127.0.0.1,localhost") or "").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in (env("CSRF_TRUSTED_ORIGINS", "") or "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "labs",
    "cohorts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "labsite.middleware.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "labsite.urls"
ASGI_APPLICATION = "labsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Data: the database file, image store and sandbox sessions live here.
LAB_DATA_DIR = Path(env("LAB_DATA_DIR", str(BASE_DIR / "var")) or "")

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{LAB_DATA_DIR / 'db.sqlite3'}") or "",
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: WAL lets readers run beside one writer,
    # IMMEDIATE takes the write lock up front instead of failing on upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = LAB_DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]

REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6390/0") or ""

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "lab:chan:"},
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_ACKS_LATE = False
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_TASK_DEFAULT_QUEUE = "lab.default"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "reap-sessions": {"task": "labs.tasks.reap_sessions", "schedule": 30.0},
}

# This worker host's name: its Celery queue is "host.<name>".
LAB_HOST_NAME = env("LAB_HOST_NAME", socket.gethostname()) or "localhost"
# Sandboxes this host runs at once before it answers "the lab is full".
LAB_HOST_CAPACITY = env_int("LAB_HOST_CAPACITY", 200)
# Live sandboxes one trainee may hold at once.
LAB_USER_SESSION_LIMIT = env_int("LAB_USER_SESSION_LIMIT", 3)
# Host uid/gid that root inside every sandbox maps to (65536 ids from here).
LAB_SANDBOX_UID = env_int("LAB_SANDBOX_UID", 100000)
LAB_RUNC = env("LAB_RUNC", "runc") or "runc"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
# A session still "starting" after this many seconds has failed (its host is gone).
LAB_START_TIMEOUT = env_int("LAB_START_TIMEOUT", 45)
# With no worker host online, Start waits this many seconds for one before answering 503.
LAB_HOST_WAIT = env_int("LAB_HOST_WAIT", 15)

# The cache (login throttling) lives in the same Redis, shared by every web process.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "lab:cache",
    }
}
# Failed logins allowed per client address and user name in LOGIN_WINDOW seconds.
LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 5)
LOGIN_WINDOW = env_int("LOGIN_WINDOW", 900)

# The container layer made real (docs/inside.md): what one trainee may keep at once.
# Checkpoints go with their session; committed images stay until the trainee removes them.
LAB_USER_CHECKPOINTS = env_int("LAB_USER_CHECKPOINTS", 30)
LAB_USER_IMAGES = env_int("LAB_USER_IMAGES", 5)
LAB_USER_LAYER_MB = env_int("LAB_USER_LAYER_MB", 512)
# A checkpoint that would stack more checkpoint layers than this (rewinds) squashes them.
LAB_CHECKPOINT_SQUASH = env_int("LAB_CHECKPOINT_SQUASH", 8)
# How often an open inside panel is refreshed over the WebSocket (seconds).
LAB_INSIDE_INTERVAL = float(env("LAB_INSIDE_INTERVAL", "1.0") or 1.0)

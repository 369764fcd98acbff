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

from labsite.logs import logging_config

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
    "sso",
    "monitoring",
]

MIDDLEWARE = [
    "labsite.logs.RequestLogMiddleware",
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
# Anyone may create an account at /accounts/signup/ (off by default: accounts come from
# an admin or the operator's directory).
LAB_SIGNUP_OPEN = env("LAB_SIGNUP_OPEN", "0") == "1"
# Password-reset mail: printed on the console unless the operator configures SMTP.
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "") or ""
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "") or ""
EMAIL_USE_TLS = env("EMAIL_USE_TLS", "0") == "1"
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "lab@localhost")

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
# Terminal streams, host heartbeats and short-lived locks: may be a Redis of their own,
# apart from the Celery broker, with maxmemory (docs/operations.md). Defaults to REDIS_URL.
STREAMS_REDIS_URL = env("STREAMS_REDIS_URL", REDIS_URL) or REDIS_URL

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
    "expire-recordings": {"task": "labs.tasks.expire_recordings", "schedule": 3600.0},
}

# This worker host's name: its Celery queue is "host.<name>".
LAB_HOST_NAME = env("LAB_HOST_NAME", socket.gethostname()) or "localhost"
# Sandboxes this host runs at once before it answers "the lab is full"; 0 derives it
# from the host's memory and pids (sandbox/quotas.py: host_budget).
LAB_HOST_CAPACITY = env_int("LAB_HOST_CAPACITY", 0)
# Live sandboxes one trainee may hold at once.
LAB_USER_SESSION_LIMIT = env_int("LAB_USER_SESSION_LIMIT", 3)
# Terminal WebSockets one user may hold open at once (tabs, watchers).
LAB_USER_WEBSOCKET_LIMIT = env_int("LAB_USER_WEBSOCKET_LIMIT", 12)
# Days a finished session's recording is kept.
LAB_RECORDING_DAYS = env_int("LAB_RECORDING_DAYS", 30)
# Host uid/gid range the image store unpacks layers into (65536 ids from here); with
# LAB_SANDBOX_RANGES 0, root inside every sandbox maps to it (one shared range).
LAB_SANDBOX_UID = env_int("LAB_SANDBOX_UID", 100000)
# Per-session uid ranges (docs/security.md): LAB_SANDBOX_RANGES ranges of 65536 ids from
# LAB_SANDBOX_RANGE_UID, one per live sandbox on this machine; the store's layers are
# idmapped into each. Capacity is at most the number of ranges.
LAB_SANDBOX_RANGE_UID = env_int("LAB_SANDBOX_RANGE_UID", 2**24)
LAB_SANDBOX_RANGES = env_int("LAB_SANDBOX_RANGES", 1024)
LAB_RUNC = env("LAB_RUNC", "runc") or "runc"
# Seconds an uploaded lab's import (extract + validate, in a Celery task) may take.
LAB_UPLOAD_SECONDS = env_int("LAB_UPLOAD_SECONDS", 60)

# A session still "starting" after this many seconds has failed (its host is gone).
LAB_START_TIMEOUT = env_int("LAB_START_TIMEOUT", 45)
# With no worker host online, Start waits this many seconds for one before answering 503.
LAB_HOST_WAIT = env_int("LAB_HOST_WAIT", 15)
# Warm pool (docs/operations.md, *Warm pool*): at most this many started, unassigned
# sandboxes per host, of its most started lab, handed out on Start; 0 (the default) turns
# the pool off and costs nothing. Its size follows the busiest minute of starts in the
# last LAB_POOL_WINDOW minutes, never below LAB_POOL_MIN.
LAB_POOL = env_int("LAB_POOL", 0)
LAB_POOL_MIN = env_int("LAB_POOL_MIN", 0)
LAB_POOL_WINDOW = env_int("LAB_POOL_WINDOW", 60)

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


def env_list(name: str, default: str = "") -> list[str]:
    """A comma-separated list setting from the environment."""
    return [v.strip() for v in (env(name, default) or "").split(",") if v.strip()]


# Single sign-on (docs/operations.md "Single sign-on"). Each is off until its server is set;
# local accounts (the admin's) always work and come first.
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]

# LDAP / Active Directory (django-auth-ldap): on when LDAP_SERVER_URI is set.
AUTH_LDAP_SERVER_URI = env("LDAP_SERVER_URI", "") or ""
SSO_LDAP_ENABLED = bool(AUTH_LDAP_SERVER_URI)
SSO_LDAP_INSTRUCTOR_GROUPS = env_list("LDAP_INSTRUCTOR_GROUPS")
SSO_LDAP_STAFF_GROUPS = env_list("LDAP_STAFF_GROUPS")
if SSO_LDAP_ENABLED:
    import ldap
    from django_auth_ldap.config import GroupOfNamesType, LDAPSearch, NestedActiveDirectoryGroupType

    AUTHENTICATION_BACKENDS.append("sso.ldap.DirectoryBackend")
    AUTH_LDAP_BIND_DN = env("LDAP_BIND_DN", "") or ""
    AUTH_LDAP_BIND_PASSWORD = env("LDAP_BIND_PASSWORD", "") or ""
    AUTH_LDAP_START_TLS = env("LDAP_START_TLS", "0") == "1"
    # Active Directory: LDAP_USER_FILTER=(sAMAccountName=%(user)s) and LDAP_GROUP_TYPE=activedirectory.
    AUTH_LDAP_USER_SEARCH = LDAPSearch(env("LDAP_USER_BASE", "") or "", ldap.SCOPE_SUBTREE,
                                       env("LDAP_USER_FILTER", "(uid=%(user)s)") or "")
    AUTH_LDAP_GROUP_SEARCH = LDAPSearch(env("LDAP_GROUP_BASE", "") or "", ldap.SCOPE_SUBTREE, "(objectClass=*)")
    AUTH_LDAP_GROUP_TYPE = (NestedActiveDirectoryGroupType() if env("LDAP_GROUP_TYPE", "") == "activedirectory"
                            else GroupOfNamesType())
    AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
    AUTH_LDAP_ALWAYS_UPDATE_USER = True
    AUTH_LDAP_CONNECTION_OPTIONS = {ldap.OPT_NETWORK_TIMEOUT: env_int("LDAP_TIMEOUT", 5),
                                    ldap.OPT_TIMEOUT: env_int("LDAP_TIMEOUT", 5), ldap.OPT_REFERRALS: 0}

# OpenID Connect (mozilla-django-oidc): on when OIDC_RP_CLIENT_ID is set. Endpoints are the
# provider's (its /.well-known/openid-configuration lists them); tokens must be RS256.
OIDC_RP_CLIENT_ID = env("OIDC_RP_CLIENT_ID", "") or ""
SSO_OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
SSO_OIDC_NAME = env("OIDC_PROVIDER_NAME", "SSO") or "SSO"
SSO_OIDC_GROUPS_CLAIM = env("OIDC_GROUPS_CLAIM", "groups") or "groups"
SSO_OIDC_INSTRUCTOR_GROUPS = env_list("OIDC_INSTRUCTOR_GROUPS")
SSO_OIDC_STAFF_GROUPS = env_list("OIDC_STAFF_GROUPS")
if SSO_OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.append("sso.oidc.ProviderBackend")
    OIDC_RP_CLIENT_SECRET = env("OIDC_RP_CLIENT_SECRET", "") or ""
    OIDC_OP_ISSUER = env("OIDC_OP_ISSUER", "") or ""
    OIDC_OP_AUTHORIZATION_ENDPOINT = env("OIDC_OP_AUTHORIZATION_ENDPOINT", "") or ""
    OIDC_OP_TOKEN_ENDPOINT = env("OIDC_OP_TOKEN_ENDPOINT", "") or ""
    OIDC_OP_USER_ENDPOINT = env("OIDC_OP_USER_ENDPOINT", "") or ""
    OIDC_OP_JWKS_ENDPOINT = env("OIDC_OP_JWKS_ENDPOINT", "") or ""
    OIDC_RP_SIGN_ALGO = "RS256"
    OIDC_RP_SCOPES = env("OIDC_RP_SCOPES", "openid email profile") or ""
    OIDC_USE_PKCE = True
    OIDC_TIMEOUT = env_int("OIDC_TIMEOUT", 10)
    OIDC_CALLBACK_CLASS = "sso.views.CallbackView"
    LOGIN_REDIRECT_URL_FAILURE = LOGIN_URL

# Prometheus metrics at /metrics (docs/operations.md "Metrics"): off (404) unless set;
# scrapers send "Authorization: Bearer <METRICS_TOKEN>".
METRICS_TOKEN = env("METRICS_TOKEN", "") or ""

# Logs (docs/operations.md "Logs"): "plain" lines here, one JSON object per line in
# production (prod.py's default); secrets from the settings are masked in every line.
LOG_FORMAT = env("LOG_FORMAT", "") or ""
LOG_LEVEL = env("LOG_LEVEL", "INFO") or "INFO"


def log_secrets() -> list[str]:
    """Values no log line may show (masked by the formatter)."""
    found = [SECRET_KEY, METRICS_TOKEN, globals().get("AUTH_LDAP_BIND_PASSWORD", ""),
             globals().get("OIDC_RP_CLIENT_SECRET", ""), DATABASES["default"].get("PASSWORD") or ""]
    return [s for s in found if s]


LOGGING = logging_config(fmt=LOG_FORMAT or "plain", level=LOG_LEVEL, host=LAB_HOST_NAME, secrets=log_secrets())
# Celery keeps the LOGGING above instead of installing its own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# The container layer made real (docs/inside.md): what one trainee may keep at once.
# Checkpoints go with their session; committed images stay until the trainee removes them.
LAB_USER_CHECKPOINTS = env_int("LAB_USER_CHECKPOINTS", 30)
LAB_USER_IMAGES = env_int("LAB_USER_IMAGES", 5)
LAB_USER_LAYER_MB = env_int("LAB_USER_LAYER_MB", 512)
# A checkpoint that would stack more checkpoint layers than this (rewinds) squashes them.
LAB_CHECKPOINT_SQUASH = env_int("LAB_CHECKPOINT_SQUASH", 8)
# How often an open inside panel is refreshed over the WebSocket (seconds).
LAB_INSIDE_INTERVAL = float(env("LAB_INSIDE_INTERVAL", "1.0") or 1.0)

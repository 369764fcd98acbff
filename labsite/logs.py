"""Logging: one JSON object per line in production (LOG_FORMAT=json), a readable line in
development; every line carries what is known about the event — service, host, request,
user, session, lab, step — from context variables set per request (middleware) and per
Celery task (monitoring.hooks). Known secrets are masked; the terminal's bytes are never
logged (the relay and the consumer log only session ids and errors).

Importable from settings: nothing here touches Django models or settings at import time.
"""
from __future__ import annotations

import contextvars
import logging
import re
import socket
import sys
import time
import uuid
from typing import Callable

from pythonjsonlogger.json import JsonFormatter

# What one event is about; empty values are left out of the line.
CONTEXT_FIELDS = ("request_id", "user_id", "session_id", "lab", "step", "task")
_context: contextvars.ContextVar[dict] = contextvars.ContextVar("lab_log_context", default={})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def log_context_set(**fields: object) -> contextvars.Token:
    """Add fields to the current context (this request, this task); returns a reset token."""
    return _context.set({**_context.get(), **{k: v for k, v in fields.items() if v not in (None, "")}})


def log_context_reset(token: contextvars.Token | None = None) -> None:
    """Back to the context before log_context_set (or to nothing)."""
    if token is not None:
        _context.reset(token)
    else:
        _context.set({})


def service_name(argv: list[str] | None = None) -> str:
    """web, worker, beat or relay, from the command this process runs."""
    args = argv if argv is not None else sys.argv
    joined = " ".join(args)
    if "relay" in args[1:2] or joined.endswith("manage.py relay"):
        return "relay"
    if "celery" in joined:
        return "beat" if " beat" in joined else "worker"
    return "web" if ("uvicorn" in joined or "asgi" in joined or "runserver" in joined) else "manage"


class ContextFilter(logging.Filter):
    """Puts the service, host and the current context on every record."""

    def __init__(self, host: str = "") -> None:
        super().__init__()
        self.service = service_name()
        self.host = host or socket.gethostname()

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.host = self.host
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class _Masking:
    def __init__(self, secrets: list[str] | None) -> None:
        # Short values would mask ordinary words; real secrets are long.
        self._secrets = sorted({s for s in (secrets or []) if s and len(s) >= 8}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text


class LabJsonFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message, service, host and context."""

    def __init__(self, *args, secrets: list[str] | None = None, **kwargs) -> None:
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        super().__init__("%(levelname)s %(name)s %(message)s", *args, **kwargs)
        self._masking = _Masking(secrets)

    def process_log_record(self, log_data: dict) -> dict:
        log_data.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
        return log_data

    def format(self, record: logging.LogRecord) -> str:
        return self._masking.mask(super().format(record))


class LabPlainFormatter(logging.Formatter):
    """Development: a readable line, with the context at its end."""

    def __init__(self, *args, secrets: list[str] | None = None, **kwargs) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._masking = _Masking(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={getattr(record, k)}" for k in CONTEXT_FIELDS if getattr(record, k, ""))
        return self._masking.mask(f"{line} [{extra}]" if extra else line)


def logging_config(*, fmt: str, level: str, host: str, secrets: list[str]) -> dict:
    """The LOGGING setting: JSON lines (fmt="json") or plain lines, to stderr. Python
    warnings (a library's deprecation, Celery's root warning) become log events too."""
    logging.captureWarnings(True)
    formatter = LabJsonFormatter if fmt == "json" else LabPlainFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter, "host": host}},
        "formatters": {"lab": {"()": formatter, "secrets": secrets}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "lab", "filters": ["context"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.channels.server": {"level": "WARNING"},
            # uvicorn's own access and error lines, in the same format.
            "uvicorn": {"handlers": ["console"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


access_log = logging.getLogger("labsite.access")


class RequestLogMiddleware:
    """A request id (the proxy's X-Request-ID, or a new one) for every log line of the
    request, echoed in the response; one access line per request, path without its query
    string (which can carry sign-in codes)."""

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request):
        given = request.headers.get("X-Request-ID", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        token = log_context_set(request_id=request_id)
        started = time.monotonic()
        try:
            response = self.get_response(request)
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated:
                log_context_set(user_id=user.pk)
            access_log.info("%s %s %s", request.method, request.path, response.status_code,
                            extra={"method": request.method, "path": request.path, "status": response.status_code,
                                   "duration_ms": round((time.monotonic() - started) * 1000, 1)})
            response["X-Request-ID"] = request_id
            return response
        finally:
            log_context_reset(token)

    def process_view(self, request, view_func, view_args, view_kwargs) -> None:
        """The session, lab and step a URL names, and who asks."""
        user = getattr(request, "user", None)
        log_context_set(session_id=view_kwargs.get("sid"), lab=view_kwargs.get("slug"), step=view_kwargs.get("step"),
                        user_id=user.pk if user is not None and user.is_authenticated else None)

"""Errors of the labs app, mapped to HTTP and WebSocket answers in labs/api.py and consumers.py."""
from __future__ import annotations


class LabError(Exception):
    """Base: a message a user can act on, and the HTTP status that carries it."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(LabError):
    status = 400


class NotFound(LabError):
    status = 404


class Conflict(LabError):
    status = 409


class ServiceUnavailable(LabError):
    """No worker host is alive, or every host is full."""

    status = 503

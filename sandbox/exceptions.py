"""Errors of the sandbox engine, each with a message a user or operator can act on."""
from __future__ import annotations


class SandboxError(Exception):
    """Base class: something about a sandbox went wrong."""


class RuntimeFailed(SandboxError):
    """runc refused or failed; the message carries its stderr."""


class RelayUnavailable(SandboxError):
    """The host's terminal relay is not running or did not answer."""

    # True when nothing listens on the relay's socket (it may be restarting).
    not_listening = False


class CheckTimeout(SandboxError):
    """A check script ran past its time limit."""


class CheckForged(SandboxError):
    """What ran a check was not the host's shell, or the sandbox's mounts moved under it."""

"""Redis keys of the terminal streams, shared by the relay and the web consumer.

term:<sid>:out  output entries {d: bytes}, trimmed to ~STREAM_KEEP_BYTES by the relay, so a
                reconnecting browser resumes exactly from the last id it saw; a fresh
                page replays only the last REPLAY_BYTES of it.
term:<sid>:in   input entries {d: bytes} keystrokes, {r: "cols rows"} resize,
                {a: id} a viewer's acknowledgement (flow control). Made by the relay
                when the sandbox starts ({o: ""}), deleted when it ends; viewers append
                with NOMKSTREAM, so input to an ended session is refused, not stored.
lab:host:<name> a host's heartbeat: capacity and live sandboxes (expires when it dies).
lab:hold:<name> its PTY holder's heartbeat: the sandboxes are alive while this is set.
"""
from __future__ import annotations

import re

# The relay never runs more than the flow-control window (WINDOW_BYTES in server.py,
# equal to this) ahead of what viewers acknowledged, so nothing unacknowledged is ever
# trimmed: resuming is exact. A page opened afresh gets at most REPLAY_BYTES.
STREAM_KEEP_BYTES = 1024 * 1024
REPLAY_BYTES = 512 * 1024
HOST_TTL = 5
# A relay handing over to its successor keeps its host alive this long.
HOST_HANDOVER_TTL = 30
# term:<sid>:in holds at most this many entries (64 KiB each at most): the relay trims
# what it has read, so this bounds only input nobody reads (relay away, session over).
INPUT_MAXLEN = 128
# Output of an ended session stays this long for a last look, then expires.
ENDED_TTL = 3600
HOSTS_SET = "lab:hosts"
# A Redis stream entry id as a browser may send it ("<ms>-<seq>").
ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


def entry_id_valid(text: str) -> bool:
    """Whether `text` is a well-formed stream entry id (what a browser may send back)."""
    return bool(ENTRY_ID.match(text))


def entry_id_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id as (milliseconds, sequence), to compare ids in stream order."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def out_key(sid: str) -> str:
    """Output stream of a session."""
    return f"term:{sid}:out"


def in_key(sid: str) -> str:
    """Input stream of a session."""
    return f"term:{sid}:in"


def host_key(host: str) -> str:
    """Heartbeat key of a worker host."""
    return f"lab:host:{host}"


def holder_key(host: str) -> str:
    """Set while the host's PTY holder runs: its sandboxes are alive, whatever the relay does."""
    return f"lab:hold:{host}"


def wake_key(host: str) -> str:
    """Stream the relay's input reader also watches, to pick up new sessions at once."""
    return f"lab:relay:{host}:wake"

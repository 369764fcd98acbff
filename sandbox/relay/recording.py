"""Session recordings in asciicast v2: a JSON header line, then one JSON array per
event — [seconds, "o", text] for output, [seconds, "r", "COLSxROWS"] for a resize.

Output is decoded incrementally, so a UTF-8 character split across two PTY reads is
written whole. A recording stops growing at `cap` bytes and says so in a last event.
"""
from __future__ import annotations

import codecs
import json
import os
import time
from pathlib import Path

DEFAULT_CAP = 2 * 1024 * 1024


def _last_time(path: Path) -> float:
    """The time of the last event in a recording (0 when there is none)."""
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
        lines = f.read().splitlines()
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, list) and event and isinstance(event[0], (int, float)):
            return float(event[0])
    return 0.0


class Recorder:
    """Appends one session's terminal events to a .cast file."""

    def __init__(self, path: Path, *, cols: int, rows: int, cap: int = DEFAULT_CAP) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.cap = cap
        self.start = time.monotonic()
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.size = 0
        self.full = False
        # Append: a reset sandbox, or a relay that took over a running one, keeps
        # recording into the same session's file, its clock going on from the last event.
        self.file = open(path, "a", encoding="utf-8")
        self.size = self.file.tell()
        self.start -= _last_time(path) if self.size else 0.0
        if self.size == 0:
            self._write({"version": 2, "width": cols, "height": rows, "timestamp": int(time.time()),
                         "env": {"TERM": "xterm-256color", "SHELL": "/bin/sh"}})

    def _write(self, event: object) -> None:
        if self.file.closed:  # a flush that was under way when the session closed
            return
        line = json.dumps(event, ensure_ascii=False) + "\n"
        if self.size + len(line) > self.cap:
            if not self.full:
                self.full = True
                note = json.dumps([self._now(), "o", "\r\n[recording stopped: size limit reached]\r\n"]) + "\n"
                self.file.write(note)
            return
        self.file.write(line)
        self.size += len(line)

    def _now(self) -> float:
        return round(time.monotonic() - self.start, 6)

    def output(self, data: bytes) -> None:
        """Terminal output as the sandbox wrote it."""
        if self.full:
            return
        text = self.decoder.decode(data)
        if text:
            self._write([self._now(), "o", text])

    def resize(self, cols: int, rows: int) -> None:
        """A window size change."""
        self._write([self._now(), "r", f"{cols}x{rows}"])

    def close(self) -> None:
        """Flush what is pending and close the file."""
        tail = self.decoder.decode(b"", final=True)
        if tail:
            self._write([self._now(), "o", tail])
        self.file.close()


def recording_path(data_dir: Path, sid: str) -> Path:
    """Where a session's recording is written on its host until the session ends."""
    return data_dir / "recordings" / f"{sid}.cast"


def recording_take(data_dir: Path, sid: str) -> str | None:
    """Read and remove a finished recording (None if there is none)."""
    path = recording_path(data_dir, sid)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    os.unlink(path)
    return text

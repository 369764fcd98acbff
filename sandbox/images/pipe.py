"""Image bytes from one machine to another through Redis, a bounded window at a time.

A host streams an archive into a Redis stream `lab:pipe:<id>` in CHUNK-sized entries;
the reader (the web server streaming a download, or another host fetching an image)
deletes each entry as it takes it, and the writer waits while WINDOW entries are
unread: Redis never holds more than WINDOW x CHUNK bytes of a transfer, and neither end
holds the archive in memory. The reader keeps `lab:pipe:<id>:reader` alive while it
reads; the writer stops as soon as it is gone (a download cancelled), and everything
expires by itself if both ends die.
"""
from __future__ import annotations

import io
import time
from typing import Iterator

CHUNK = 256 * 1024
WINDOW = 8
IDLE = 30.0  # seconds either end waits for the other


class PipeBroken(Exception):
    """The other end went away, or said why it stopped."""


def pipe_key(token: str) -> str:
    """The Redis stream of one transfer."""
    if not token.isalnum():
        raise ValueError(f"bad pipe id {token!r}")
    return f"lab:pipe:{token}"


def reader_key(key: str) -> str:
    return f"{key}:reader"


class PipeWriter(io.RawIOBase):
    """A write-only file whose bytes go to a pipe's reader (tarfile's 'w|' mode writes to it)."""

    def __init__(self, redis, key: str, *, idle: float = IDLE) -> None:
        super().__init__()
        self.redis, self.key, self.idle = redis, key, idle
        self.buf = bytearray()
        self.sent = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.buf += data
        while len(self.buf) >= CHUNK:
            self._send({"d": bytes(self.buf[:CHUNK])})
            del self.buf[:CHUNK]
        return len(data)

    def _send(self, fields: dict) -> None:
        deadline = time.monotonic() + self.idle
        while True:
            if not self.redis.exists(reader_key(self.key)):
                raise PipeBroken("the reader went away")
            if self.redis.xlen(self.key) < WINDOW:
                break
            if time.monotonic() > deadline:
                raise PipeBroken(f"the reader took nothing for {self.idle:g} s")
            time.sleep(0.002)
        pipe = self.redis.pipeline()
        pipe.xadd(self.key, fields)
        pipe.expire(self.key, int(self.idle * 2))
        pipe.execute()
        self.sent += len(fields.get("d", b""))

    def finish(self) -> None:
        """Send what is buffered and the end mark."""
        if self.buf:
            self._send({"d": bytes(self.buf)})
            self.buf.clear()
        self._send({"end": "1"})

    def fail(self, message: str) -> None:
        """Tell the reader why nothing more comes (best effort)."""
        try:
            self.redis.xadd(self.key, {"error": message[:2000]})
            self.redis.expire(self.key, int(self.idle * 2))
        except Exception:  # the reader times out by itself
            pass


def pipe_open(redis, key: str, *, idle: float = IDLE) -> None:
    """Say a reader is there (before the writer is asked to start)."""
    redis.set(reader_key(key), 1, ex=int(idle * 2))


def pipe_close(redis, key: str) -> None:
    """The reader is done (or gives up): the writer stops, the stream goes."""
    redis.delete(reader_key(key), key)


def pipe_read(redis, key: str, *, idle: float = IDLE) -> Iterator[bytes]:
    """The chunks a writer sends, until its end mark; PipeBroken on its error or silence."""
    last = "0-0"
    try:
        while True:
            got = redis.xread({key: last}, count=WINDOW, block=int(idle * 1000))
            if not got:
                raise PipeBroken(f"the host sent nothing for {idle:g} s")
            redis.expire(reader_key(key), int(idle * 2))
            for entry_id, fields in got[0][1]:
                last = entry_id
                redis.xdel(key, entry_id)
                chunk = pipe_entry(fields)
                if chunk is None:
                    return
                if chunk:
                    yield chunk
    finally:
        pipe_close(redis, key)


def pipe_entry(fields: dict[bytes, bytes]) -> bytes | None:
    """One entry of a pipe: its chunk (b"" for anything else), None at the end mark,
    PipeBroken for the writer's error."""
    if b"d" in fields:
        return fields[b"d"]
    if b"error" in fields:
        raise PipeBroken(fields[b"error"].decode("utf-8", "replace"))
    return None if b"end" in fields else b""


class PipeReader(io.RawIOBase):
    """pipe_read as a read-only file (tarfile's 'r|' mode reads from it)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self.chunks, self.buf = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self.buf:
            try:
                self.buf = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n

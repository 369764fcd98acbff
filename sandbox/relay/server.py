"""One asyncio relay per worker host: every PTY master of the host ⇄ Redis streams.

Output is read as it comes and flushed to `term:<sid>:out` at once when the PTY was
quiet, or at most every BATCH_SECONDS while it streams, in frames of up to
FRAME_BYTES: a keystroke's echo leaves immediately, `yes` leaves in large frames.
A PTY whose viewers are more than WINDOW_BYTES behind (by their acknowledgements)
is not read, so the sandbox blocks on write instead of memory growing anywhere.

Every PTY master is also given to the host's holder (holder.py), so the relay may die
or be replaced without a shell noticing: a new relay takes the masters back (`adopt`)
and goes on from where the streams say the old one was. stop() leaves the sandboxes to
that successor; stop(drain=True) is the host shutting down and lets go of all of them.
"""
from __future__ import annotations

import asyncio
import collections
import fcntl
import json
import logging
import os
import struct
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import redis.asyncio as aioredis

from sandbox.config import HostConfig
from sandbox.exceptions import RuntimeFailed
from sandbox.relay import streams
from sandbox.relay.holder import HolderClient
from sandbox.relay.recording import Recorder, recording_path
from sandbox.relay.spawn import Reaper, console_listener, receive_master
from sandbox.relay.tabs import TabsMixin, _pidfd, tab_split, tabs_key

log = logging.getLogger(__name__)

FRAME_BYTES = 64 * 1024
# A flush at least this big means the output is streaming (batch it), smaller is interactive.
STREAMING_FLUSH_BYTES = 2048
BATCH_SECONDS = 0.004
WINDOW_BYTES = streams.STREAM_KEEP_BYTES
INPUT_CAP = 256 * 1024
_id_tuple = streams.entry_id_order


@dataclass
class Pty:
    """One sandbox's terminal as the relay holds it."""

    sid: str
    fd: int
    buf: bytearray = field(default_factory=bytearray)
    pending_in: bytearray = field(default_factory=bytearray)
    reading: bool = True
    flushing: bool = False
    timer: asyncio.TimerHandle | None = None
    last_flush: float = 0.0
    # Bytes the last flush carried: small (an echo, a prompt) means interactive.
    last_flush_bytes: int = 0
    in_last: str = "0-0"
    # (entry id, cumulative bytes after it) of retained output, for trim and acks.
    out_log: collections.deque = field(default_factory=collections.deque)
    out_total: int = 0
    acked_total: int = 0
    trimmed_total: int = 0
    last_activity: float = field(default_factory=time.time)
    recorder: Recorder | None = None
    # A warm-pool sandbox not yet assigned (sandbox/pool.py): its output so far is kept
    # here (a prompt) for the recording that begins on assignment.
    pooled: bool = False
    early: bytearray = field(default_factory=bytearray)
    # A tab (sandbox/relay/tabs.py): its number, its shell's host pid and a pidfd of it.
    tab: int = 0
    pid: int = 0
    pidfd: int | None = None


class Relay(TabsMixin):
    """Holds the PTYs of this host; started once per worker host."""

    def __init__(self, cfg: HostConfig, *, on_exit: Callable[[str], Awaitable[None] | None] | None = None,
                 holder: HolderClient | None = None) -> None:
        self.cfg = cfg
        self.on_exit = on_exit
        self.holder = holder
        self.ptys: dict[str, Pty] = {}  # by terminal id: a session id, or a tab's `<sid>.<n>`
        self.opening: set[str] = set()  # tabs being opened
        self.run_dir = cfg.runc_root.parent / f"{cfg.host}.relay"
        self._stop = asyncio.Event()
        self.draining = False

    # ---- lifecycle -------------------------------------------------------------
    async def serve(self, ready: Callable[[], None] | None = None, *, adopt: dict[str, int] | None = None) -> None:
        """Run until stop(): control socket, input pump, heartbeat. `adopt` are PTY
        masters of sandboxes a previous relay ran (from the holder), by session id."""
        self.loop = asyncio.get_running_loop()
        self.reaper = Reaper(self.loop)
        self.redis = aioredis.from_url(self.cfg.redis_url)
        self.redis_in = aioredis.from_url(self.cfg.redis_url)
        if adopt:
            await self._adopt(adopt)
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Traversable (not readable) by sandbox root: session roots live below it.
        self.cfg.host_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.host_dir.chmod(0o711)
        self.cfg.relay_socket.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._control, path=str(self.cfg.relay_socket))
        os.chmod(self.cfg.relay_socket, 0o600)
        tasks = [asyncio.create_task(self._input_pump()), asyncio.create_task(self._heartbeat())]
        if ready:
            ready()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for sid in list(self.ptys):
                self.close(sid, release=self.draining)
            try:
                if self.draining:
                    await self.redis.srem(streams.HOSTS_SET, self.cfg.host)
                    await self.redis.delete(streams.host_key(self.cfg.host))
                else:
                    # A successor takes over within seconds: keep the host alive meanwhile,
                    # so no page decides its sandbox was lost.
                    await self.redis.expire(streams.host_key(self.cfg.host), streams.HOST_HANDOVER_TTL)
            except Exception:  # Redis may be the thing that is gone
                log.warning("could not update the heartbeat of host %s", self.cfg.host)
            await self.redis.aclose()
            await self.redis_in.aclose()
            self.cfg.relay_socket.unlink(missing_ok=True)
            try:
                self.run_dir.rmdir()  # console sockets are gone with their sandboxes
            except OSError:
                pass

    def stop(self, *, drain: bool = False) -> None:
        """Ask serve() to return: leaving every sandbox to the next relay, or (drain)
        letting go of them all because the host is shutting down."""
        self.draining = self.draining or drain
        self._stop.set()

    async def _adopt(self, masters: dict[str, int]) -> None:
        """Carry on relaying terminals a previous relay of this host started."""
        beat = await self.redis.get(streams.host_key(self.cfg.host))
        activity = (json.loads(beat).get("activity") or {}) if beat else {}
        for sid, fd in masters.items():
            os.set_blocking(fd, False)
            base, tab = tab_split(sid)
            pty = Pty(sid=sid, fd=fd, last_activity=activity.get(base, time.time()), tab=tab,
                      recorder=None if tab else Recorder(recording_path(self.cfg.data_dir, sid), cols=80, rows=24))
            if tab:  # its shell, to end it when the tab closes
                pid = await self.redis.hget(tabs_key(base), str(tab))
                pty.pid = int(pid) if pid and pid.isdigit() else 0
                pty.pidfd = _pidfd(pty.pid) if pty.pid else None
            # The first entry of the input stream is always one already delivered
            # (see start() and _input_pump): carry on after it.
            first = await self.redis.xrange(streams.in_key(sid), count=1)
            pty.in_last = first[0][0].decode() if first else "0-0"
            self.ptys[sid] = pty
            self.loop.add_reader(fd, self._on_readable, pty)
        log.info("adopted %d terminals of host %s", len(masters), self.cfg.host)

    # ---- control socket: one JSON request, one JSON answer ---------------------
    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            req = json.loads(await reader.readline())
            op = req.get("op")
            if op == "run":
                pid = await self.start(req["sid"], Path(req["bundle"]), cols=req.get("cols", 80), rows=req.get("rows", 24),
                                       pooled=bool(req.get("pool")))
                resp = {"ok": True, "pid": pid}
            elif op == "assign":
                await self.assign(req["sid"], cols=req.get("cols", 80), rows=req.get("rows", 24))
                resp = {"ok": True}
            elif op == "close":
                self.close(req["sid"])
                resp = {"ok": True}
            elif op == "drain":
                self.stop(drain=True)
                resp = {"ok": True}
            elif op == "list":
                resp = {"ok": True, "sessions": {s: {"idle": time.time() - p.last_activity} for s, p in self.ptys.items() if not p.tab}}
            elif op == "ping":
                resp = {"ok": True, "host": self.cfg.host, "live": self._live()}
            else:
                resp = {"ok": False, "error": f"unknown op {op!r}"}
        except Exception as exc:  # every failure goes back to the caller as text
            log.exception("relay request failed")
            resp = {"ok": False, "error": str(exc)}
        writer.write(json.dumps(resp).encode() + b"\n")
        await writer.drain()
        writer.close()

    # ---- starting a sandbox ----------------------------------------------------
    async def start(self, sid: str, bundle: Path, *, cols: int = 80, rows: int = 24, pooled: bool = False) -> int:
        """`runc run -d --console-socket` and keep the PTY master it hands over (pooled:
        a warm-pool sandbox, recorded and idle-timed only from assign())."""
        if sid in self.ptys:
            return 0
        sock_path = self.run_dir / f"{sid}.sock"
        pid_file = bundle / "init.pid"
        listener = console_listener(sock_path)
        try:
            recv = asyncio.create_task(receive_master(self.loop, listener))
            code, err = await self.reaper.run([
                # --no-new-keyring: a fresh session keyring per sandbox is charged to the
                # sandbox uid and freed only by the kernel's key GC minutes later, so a
                # busy host hits the per-user key quota (200); keyctl is seccomp-denied anyway.
                self.cfg.runc, "--root", str(self.cfg.runc_root), "run", "--detach", "--no-new-keyring",
                "--console-socket", str(sock_path), "--pid-file", str(pid_file),
                "--bundle", str(bundle), sid,
            ])
            if code != 0:
                recv.cancel()
                raise RuntimeFailed(f"runc run failed: {err.strip() or f'exit {code}'}")
            fd = await asyncio.wait_for(recv, 5)
        finally:
            listener.close()
            sock_path.unlink(missing_ok=True)
        cols, rows = await self._page_size(sid, cols, rows)
        self._set_size(fd, cols, rows)
        os.set_blocking(fd, False)
        self._hold(sid, fd)
        pty = Pty(sid=sid, fd=fd, pooled=pooled,
                  recorder=None if pooled else Recorder(recording_path(self.cfg.data_dir, sid), cols=cols, rows=rows))
        # Input from before this shell (a reset sandbox, keys sent while starting) is
        # not for it: read only what arrives from now on. The marker also makes the
        # stream, which viewers only append to while it exists (NOMKSTREAM), and the
        # trim leaves it first: the first entry of the stream is always one already
        # dealt with, which is how a successor relay knows where to carry on.
        key = streams.in_key(sid)
        marker = await self.redis.xadd(key, {"o": b""}, maxlen=streams.INPUT_MAXLEN, approximate=True)
        pty.in_last = marker.decode()
        # Exact (not "~"): an approximate trim keeps whole old nodes, and a successor
        # relay would type those keys into the shell a second time.
        await self.redis.xtrim(key, minid=pty.in_last, approximate=False)
        self.ptys[sid] = pty
        self.loop.add_reader(fd, self._on_readable, pty)
        await self.redis.xadd(streams.wake_key(self.cfg.host), {"s": sid}, maxlen=16, approximate=True)
        return int(pid_file.read_text()) if pid_file.exists() else 0

    async def _page_size(self, sid: str, cols: int, rows: int) -> tuple[int, int]:
        """Keys from before this shell (a reset sandbox, keys sent while starting) are
        not for it (see the marker in start()). But the page's newest size is: a page
        that connected while the sandbox was starting sent it already."""
        recent = await self.redis.xrevrange(streams.in_key(sid), count=64)
        for _, fields in recent:
            if b"r" in fields:
                return tuple(int(x) for x in fields[b"r"].split())  # type: ignore[return-value]
        return cols, rows

    async def assign(self, sid: str, *, cols: int, rows: int) -> None:
        """A warm-pool sandbox becomes a session's: the page's size, the recording and
        the idle clock start now, as for a sandbox started this moment."""
        pty = self.ptys.get(sid)
        if pty is None or not pty.pooled:
            raise RuntimeFailed(f"{sid} is not an unassigned pool sandbox of this relay")
        cols, rows = await self._page_size(sid, cols, rows)
        self._set_size(pty.fd, cols, rows)
        pty.recorder = Recorder(recording_path(self.cfg.data_dir, sid), cols=cols, rows=rows)
        pty.recorder.output(bytes(pty.early))  # the prompt it printed while it waited, at 0 s
        pty.early.clear()
        pty.pooled = False
        pty.last_activity = time.time()

    @staticmethod
    def _new_pty(**fields: object) -> Pty:
        return Pty(**fields)  # type: ignore[arg-type]

    def _hold(self, sid: str, fd: int) -> None:
        """Give the holder a copy of the master, so the shell outlives this relay."""
        if self.holder is None:
            return
        try:
            self.holder.put(sid, fd)
        except OSError as exc:
            log.warning("the PTY holder did not take %s (%s): it will not survive a relay restart", sid, exc)

    def close(self, sid: str, *, release: bool = True) -> None:
        """Stop relaying a PTY and close it (the caller deletes the container); release
        also has the holder let go of its copy, which ends the shell if it still runs.
        A sandbox's terminal takes its tabs with it."""
        for tid in self.tabs_of(sid):
            self.close(tid, release=release)
        if release and self.holder is not None:
            try:
                self.holder.drop(sid)
            except OSError as exc:
                log.warning("the PTY holder did not drop %s: %s", sid, exc)
        pty = self.ptys.pop(sid, None)
        if pty is None:
            return
        if pty.timer:
            pty.timer.cancel()
        if pty.recorder:
            pty.recorder.close()
        self._drop_fd(pty)
        if pty.tab:
            self._tab_closed(pty, release=release)

    def _drop_fd(self, pty: Pty) -> None:
        try:
            self.loop.remove_reader(pty.fd)
            self.loop.remove_writer(pty.fd)
            os.close(pty.fd)
        except OSError:
            pass

    @staticmethod
    def _set_size(fd: int, cols: int, rows: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", max(1, min(rows, 500)), max(1, min(cols, 1000)), 0, 0))

    # ---- output ----------------------------------------------------------------
    def _on_readable(self, pty: Pty) -> None:
        # Drain what the PTY holds (each read returns at most a tty buffer's worth),
        # up to a frame: fewer trips through the event loop while output streams.
        got = 0
        while len(pty.buf) < FRAME_BYTES:
            try:
                data = os.read(pty.fd, FRAME_BYTES - len(pty.buf))
            except BlockingIOError:
                break
            except OSError:  # EIO: every slave closed, the sandbox's init has exited
                data = b""
            if not data:
                if got:
                    break  # deliver what we have; the next call sees the end
                self.loop.remove_reader(pty.fd)
                self.loop.create_task(self._ended(pty))
                return
            pty.buf += data
            got += len(data)
        if len(pty.buf) >= FRAME_BYTES or self._behind(pty):
            self._pause(pty)
        self._schedule_flush(pty)

    def _schedule_flush(self, pty: Pty) -> None:
        if pty.flushing or pty.timer is not None or not pty.buf:
            return
        # Interactive output (the last frame was small) leaves at once; a stream waits
        # up to BATCH_SECONDS after the previous frame, so it leaves in large frames.
        streaming = pty.last_flush_bytes >= STREAMING_FLUSH_BYTES
        if len(pty.buf) >= FRAME_BYTES or not streaming:
            delay = 0.0
        else:
            delay = max(0.0, pty.last_flush + BATCH_SECONDS - self.loop.time())
        if delay <= 0:
            self.loop.create_task(self._flush(pty))
        else:
            pty.timer = self.loop.call_later(delay, self._timer_fired, pty)

    def _timer_fired(self, pty: Pty) -> None:
        pty.timer = None
        self.loop.create_task(self._flush(pty))

    async def _flush(self, pty: Pty) -> None:
        if pty.flushing:
            return
        pty.flushing = True
        sent = 0
        try:
            while pty.buf:
                data = bytes(pty.buf[:FRAME_BYTES])
                try:
                    entry_id = (await self.redis.xadd(streams.out_key(pty.sid), {"d": data})).decode()
                except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                    # Redis is away (restarting): keep the bytes, stop reading this
                    # PTY (the sandbox blocks) and try again shortly.
                    log.warning("output of %s waits for Redis: %s", pty.sid, exc)
                    self._pause(pty)
                    self.loop.call_later(0.5, self._schedule_flush, pty)
                    return
                del pty.buf[:len(data)]
                sent += len(data)
                if pty.recorder:
                    pty.recorder.output(data)
                elif pty.pooled and len(pty.early) < 16384:
                    pty.early += data
                pty.out_total += len(data)
                pty.out_log.append((entry_id, pty.out_total))
                self._trim(pty)
                if len(pty.buf) < FRAME_BYTES:
                    break  # a partial frame waits for the batch timer (see _schedule_flush)
        except Exception:
            log.exception("output flush failed for %s", pty.sid)
        finally:
            pty.flushing = False
            pty.last_flush = self.loop.time()
            pty.last_flush_bytes = sent
        self._maybe_resume(pty)
        self._schedule_flush(pty)

    def _trim(self, pty: Pty) -> None:
        """Keep about STREAM_KEEP_BYTES of output in the stream (sent without waiting)."""
        drop_to = None
        while pty.out_log and pty.out_total - pty.out_log[0][1] > streams.STREAM_KEEP_BYTES:
            drop_to = pty.out_log.popleft()
        if drop_to is not None:
            pty.trimmed_total = drop_to[1]
            # MINID removes entries older than the first one we keep.
            minid = pty.out_log[0][0] if pty.out_log else drop_to[0]
            self.loop.create_task(self.redis.xtrim(streams.out_key(pty.sid), minid=minid))

    def _behind(self, pty: Pty) -> bool:
        return pty.out_total + len(pty.buf) - pty.acked_total > WINDOW_BYTES

    def _pause(self, pty: Pty) -> None:
        if pty.reading:
            pty.reading = False
            self.loop.remove_reader(pty.fd)

    def _maybe_resume(self, pty: Pty) -> None:
        if pty.sid not in self.ptys:
            return
        if not pty.reading and len(pty.buf) < FRAME_BYTES and not self._behind(pty):
            pty.reading = True
            self.loop.add_reader(pty.fd, self._on_readable, pty)

    def _ack(self, pty: Pty, entry_id: str) -> None:
        key = _id_tuple(entry_id)
        acked = pty.trimmed_total
        for eid, total in pty.out_log:
            if _id_tuple(eid) <= key:
                acked = total
            else:
                break
        pty.acked_total = max(pty.acked_total, acked)
        self._maybe_resume(pty)

    async def _ended(self, pty: Pty) -> None:
        if self.ptys.get(pty.sid) is not pty:
            return
        await self._flush(pty)
        self.close(pty.sid)
        if pty.tab:
            return  # only that tab ends (see _tab_closed); the sandbox runs on
        await self.redis.expire(streams.out_key(pty.sid), 3600)
        if self.on_exit:
            res = self.on_exit(pty.sid)
            if asyncio.iscoroutine(res):
                await res

    # ---- input -----------------------------------------------------------------
    async def _input_pump(self) -> None:
        wake = streams.wake_key(self.cfg.host)
        wake_last = "$"
        while True:
            keys = {wake: wake_last}
            keys.update({streams.in_key(s): p.in_last for s, p in self.ptys.items()})
            try:
                resp = await self.redis_in.xread(keys, block=2000, count=512)
            except (ConnectionError, OSError, aioredis.ConnectionError) as exc:
                log.warning("input pump: %s; retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for key, entries in resp or []:
                key = key.decode()
                if key == wake:
                    wake_last = entries[-1][0].decode()
                    continue
                sid = key.split(":")[1]
                pty = self.ptys.get(sid)
                if pty is None:
                    continue
                for entry_id, fields in entries:
                    self._input(pty, fields)
                pty.in_last = entries[-1][0].decode()
                self.loop.create_task(self.redis.xtrim(key, minid=pty.in_last, approximate=False))

    def _input(self, pty: Pty, fields: dict) -> None:
        if b"d" in fields:
            pty.last_activity = time.time()
            if len(pty.pending_in) + len(fields[b"d"]) <= INPUT_CAP:
                pty.pending_in += fields[b"d"]
            self._write_pending(pty)
        elif b"r" in fields:
            cols, rows = (int(x) for x in fields[b"r"].split())
            self._set_size(pty.fd, cols, rows)
            if pty.recorder:
                pty.recorder.resize(cols, rows)
        elif b"a" in fields:
            self._ack(pty, fields[b"a"].decode())
        elif (b"t" in fields or b"x" in fields) and not pty.tab:
            self._tab_request(pty, fields)

    def _write_pending(self, pty: Pty) -> None:
        try:
            n = os.write(pty.fd, pty.pending_in)
            del pty.pending_in[:n]
        except BlockingIOError:
            pass
        except OSError:
            pty.pending_in.clear()
        if pty.pending_in:
            self.loop.add_writer(pty.fd, self._writable, pty)

    def _writable(self, pty: Pty) -> None:
        self.loop.remove_writer(pty.fd)
        if pty.sid in self.ptys:
            self._write_pending(pty)

    # ---- heartbeat -------------------------------------------------------------
    async def _heartbeat(self) -> None:
        while True:
            # Last keystroke per session: the reaper stops sandboxes idle too long.
            beat = {"host": self.cfg.host, "queue": self.cfg.queue, "capacity": self.cfg.capacity,
                    "live": self._live(), "ts": time.time(),
                    # Of those, warm-pool sandboxes nobody has yet (they count against capacity).
                    "pooled": sum(p.pooled for p in self.ptys.values()),
                    # For /metrics: terminals held back by flow control, output not yet acknowledged.
                    "paused": sum(not p.reading for p in self.ptys.values()),
                    "backlog": sum(p.out_total + len(p.buf) - p.acked_total for p in self.ptys.values()),
                    "activity": self._activity()}
            try:
                async with self.redis.pipeline(transaction=False) as p:
                    p.set(streams.host_key(self.cfg.host), json.dumps(beat), ex=streams.HOST_TTL)
                    p.sadd(streams.HOSTS_SET, self.cfg.host)
                    await p.execute()
                await self._restore_streams()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(1.5)

    def _live(self) -> int:
        """Sandboxes (not terminals: tabs are not sandboxes) this relay holds."""
        return sum(not p.tab for p in self.ptys.values())

    def _activity(self) -> dict[str, float]:
        """Last keystroke per session, in any of its terminals."""
        last: dict[str, float] = {}
        for tid, p in self.ptys.items():
            if p.pooled:
                continue  # nobody's yet: no idle clock
            sid = tab_split(tid)[0]
            last[sid] = max(last.get(sid, 0.0), round(p.last_activity, 1))
        return last

    async def _restore_streams(self) -> None:
        """After Redis lost its data (a restart without persistence), viewers may append
        only to input streams that exist: make them again, marker first. A session that
        ended had its input deleted but its output kept (to expire): that one stays shut."""
        sids = list(self.ptys)
        if not sids:
            return
        async with self.redis.pipeline(transaction=False) as p:
            for sid in sids:
                p.exists(streams.in_key(sid), streams.out_key(sid))
            found = await p.execute()
        for sid, count in zip(sids, found):
            pty = self.ptys.get(sid)
            if count == 0 and pty is not None:
                marker = await self.redis.xadd(streams.in_key(sid), {"o": b""}, maxlen=streams.INPUT_MAXLEN, approximate=True)
                pty.in_last = marker.decode()
                log.info("input stream of %s made again (Redis lost it)", sid)

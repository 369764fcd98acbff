"""Terminal tabs: more shells in the same sandbox, each with a PTY of its own.

A tab is a terminal id `<sid>.<n>` (n = 1 … TAB_MAX - 1; the sandbox's own terminal is
`<sid>`, tab 0). Its streams are `term:<sid>.<n>:out` / `:in`, exactly like the main
terminal's, so reconnect, flow control and watching work the same; `term:<sid>:tabs` is
a hash tab number -> the shell's host pid (or "failed: why") while the tab is open.

The PTY is allocated *beside* the sandbox's console: opening the console master's
`/proc/self/fd/N` opens the ptmx of the sandbox's own devpts instance (its `max=`
bounds it; a trainee cannot redirect a magic link), so the sandbox's device cgroup may
go on refusing /dev/ptmx to everything inside. `runc exec` then runs the host's trusted
busybox sh in the sandbox with the slave as its stdin (runc passes a detached process's
stdio through), which opens the slave again by its path as a session leader without a
terminal (that makes it the controlling terminal) and execs the sandbox's `/bin/sh -l`.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import termios
from pathlib import Path

from sandbox.exceptions import RuntimeFailed
from sandbox.relay import streams
from sandbox.snapshots import Layout

log = logging.getLogger(__name__)

TAB_MAX = 4  # terminals per sandbox, its own included
TIOCGPTPEER = 0x5441
TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430
TRUSTED_SH = "/var/lib/lab/bin/busybox"  # sandbox/scripts.py SHELL: host-owned, read-only


def tab_id(sid: str, n: int) -> str:
    """Terminal id of tab n of a session (n = 0: the session's own terminal)."""
    return sid if n == 0 else f"{sid}.{n}"


def tab_split(tid: str) -> tuple[str, int]:
    """(session id, tab number) of a terminal id."""
    sid, _, n = tid.partition(".")
    return sid, int(n or 0)


def tabs_key(sid: str) -> str:
    """Hash of a session's open tabs: tab number -> shell pid, or "failed: why"."""
    return f"term:{sid}:tabs"


def tab_keys(sid: str) -> list[tuple[str, str]]:
    """(in, out) stream keys of every tab a session may have."""
    return [(f"term:{tab_id(sid, n)}:in", f"term:{tab_id(sid, n)}:out") for n in range(1, TAB_MAX)]


def valid_tab(n: int) -> bool:
    """A tab number a session may open (the cap is in the numbering)."""
    return 1 <= n < TAB_MAX


def pty_beside(master: int, *, cols: int, rows: int, owner: int) -> tuple[int, int, int]:
    """A new PTY in the devpts instance of `master`: (master, slave, number). The slave
    belongs to the sandbox's root (`owner`, a host uid) so its shell may open it."""
    fd = os.open(f"/proc/self/fd/{master}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TIOCSPTLCK, struct.pack("i", 0))  # unlockpt
        number = struct.unpack("I", fcntl.ioctl(fd, TIOCGPTN, b"\0" * 4))[0]
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", max(1, min(rows, 500)), max(1, min(cols, 1000)), 0, 0))
        slave = fcntl.ioctl(fd, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        os.fchown(slave, owner, owner)
    except BaseException:
        os.close(fd)
        raise
    return fd, slave, number


def tab_process(config: Path) -> tuple[dict, int]:
    """(runc exec process spec, host uid of the sandbox's root) for a tab's shell: the
    sandbox's own process (user, env, capabilities, rlimits) with a shell on the PTY
    whose path the caller appends to its args."""
    spec = json.loads(config.read_text())
    process = dict(spec["process"])
    process["terminal"] = False  # the PTY is ours, made above; runc's would need /dev/ptmx
    process.pop("consoleSize", None)
    process["args"] = [TRUSTED_SH, "sh", "-c", 'exec /bin/sh -l <>"$1" >&0 2>&0', "tab"]
    owner = next((m["hostID"] for m in spec["linux"].get("uidMappings", []) if m["containerID"] == 0), 0)
    return process, owner


class TabsMixin:
    """The relay's part in tabs (mixed into sandbox.relay.server.Relay)."""

    def _tab_request(self, pty, fields: dict) -> None:
        """Input of a sandbox's own terminal asking to open (`t`: "n cols rows") or close
        (`x`: "n") one of its tabs; the web checked who asks (only the owner)."""
        try:
            if b"t" in fields:
                n, cols, rows = (int(x) for x in fields[b"t"].split())
                if valid_tab(n) and tab_id(pty.sid, n) not in self.ptys and tab_id(pty.sid, n) not in self.opening:
                    self.opening.add(tab_id(pty.sid, n))
                    self.loop.create_task(self._tab_open(pty.sid, n, cols, rows))
            elif b"x" in fields:
                n = int(fields[b"x"])
                if valid_tab(n):
                    self.close(tab_id(pty.sid, n))
        except ValueError:
            log.warning("malformed tab request for %s: %r", pty.sid, fields)

    async def _tab_open(self, sid: str, n: int, cols: int, rows: int) -> None:
        tid = tab_id(sid, n)
        try:
            await self._tab_start(sid, n, cols, rows)
        except Exception as exc:
            log.warning("tab %s did not open: %s", tid, exc)
            await self.redis.hset(tabs_key(sid), str(n), f"failed: {exc}"[:300])
        finally:
            self.opening.discard(tid)

    async def _tab_start(self, sid: str, n: int, cols: int, rows: int) -> None:
        main = self.ptys.get(sid)
        if main is None:
            return
        tid = tab_id(sid, n)
        process, owner = tab_process(Layout(self.cfg.sessions_dir / sid).config)
        fd, slave, number = pty_beside(main.fd, cols=cols, rows=rows, owner=owner)
        process["args"].append(f"/dev/pts/{number}")
        spec_path = self.run_dir / f"{tid}.json"
        pid_file = self.run_dir / f"{tid}.pid"
        try:
            spec_path.write_text(json.dumps(process))
            code, err = await self.reaper.run([
                self.cfg.runc, "--root", str(self.cfg.runc_root), "exec", "--detach",
                "--pid-file", str(pid_file), "--process", str(spec_path), sid,
            ], stdin=slave)  # the shell holds the slave from its start: no hangup before it opens it
            if code != 0:
                raise RuntimeFailed(f"runc exec failed: {err.strip() or f'exit {code}'}")
            pid = int(pid_file.read_text())
        except BaseException:
            os.close(fd)
            raise
        finally:
            os.close(slave)  # the shell holds it now (fd 0): its exit hangs the master up
            spec_path.unlink(missing_ok=True)
            pid_file.unlink(missing_ok=True)
        if sid not in self.ptys:  # the sandbox stopped meanwhile
            os.close(fd)
            return
        os.set_blocking(fd, False)
        self._hold(tid, fd)
        pty = self._new_pty(sid=tid, fd=fd, tab=n, pid=pid, pidfd=_pidfd(pid))
        # A tab number used before starts from an empty screen: its old output is not this shell's.
        await self.redis.delete(streams.out_key(tid))
        key = streams.in_key(tid)
        await self.redis.delete(key)
        marker = await self.redis.xadd(key, {"o": b""}, maxlen=streams.INPUT_MAXLEN, approximate=True)
        pty.in_last = marker.decode()
        self.ptys[tid] = pty
        self.loop.add_reader(fd, self._on_readable, pty)
        await self.redis.hset(tabs_key(sid), str(n), str(pid))
        log.info("tab %s open (pid %d)", tid, pid)
        await self.redis.xadd(streams.wake_key(self.cfg.host), {"s": tid}, maxlen=16, approximate=True)

    def _tab_closed(self, pty, *, release: bool) -> None:
        """A tab's PTY was closed (its shell hung up): end its shell for good and, unless
        the relay is only handing over, its streams and its place in the tabs hash."""
        if not release:
            if pty.pidfd is not None:
                os.close(pty.pidfd)
            return
        if pty.pidfd is not None:
            # The hangup sent SIGHUP; a shell that ignores it is killed a moment later.
            pidfd = pty.pidfd
            self.loop.call_later(1.0, _kill_and_close, pidfd)
        self.loop.create_task(self._tab_streams_end(pty.sid))

    async def _tab_streams_end(self, tid: str) -> None:
        sid, n = tab_split(tid)
        try:
            async with self.redis.pipeline(transaction=False) as p:
                # The end marker tells its viewers the tab is gone (`e`), in order after its output.
                p.xadd(streams.out_key(tid), {"d": b"", "e": b"1"})
                p.expire(streams.out_key(tid), streams.ENDED_TTL)
                p.delete(streams.in_key(tid))
                p.hdel(tabs_key(sid), str(n))
                await p.execute()
        except Exception as exc:
            log.warning("could not end the streams of tab %s: %s", tid, exc)

    def tabs_of(self, sid: str) -> list[str]:
        """Terminal ids of the open tabs of a session."""
        return [t for t, p in self.ptys.items() if p.tab and tab_split(t)[0] == sid]


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _kill_and_close(pidfd: int) -> None:
    import signal

    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass  # already gone
    finally:
        os.close(pidfd)

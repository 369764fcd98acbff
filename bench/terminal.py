"""4. Keystroke echo latency and 5. output throughput and Ctrl-C, through the whole
path (WebSocket → consumer → Redis → relay → PTY → back), against terminado and a
bare PTY running the same shell, in the same run."""
from __future__ import annotations

import time

from bench import baselines
from bench.client import Browser, Terminal
from bench.ready import PROMPT
from bench.report import Figure, pct

STREAM_BYTES = 16 * 1024 * 1024
STREAM_CMD = b"busybox head -c %d /dev/zero | busybox tr '\\0' x; echo END$((6*7))\r"
STREAM_END = b"END42"
KEYS = b"abcdefghij"


class LabConn:
    """The lab's terminal WebSocket with the same send/recv as the anchors."""

    def __init__(self, term: Terminal) -> None:
        self.term = term

    @property
    def frames(self) -> int:
        return self.term.frames

    def send(self, data: bytes) -> None:
        self.term.send(data)

    def recv(self, timeout: float) -> bytes | None:
        return self.term.recv_once(timeout)

    def close(self) -> None:
        self.term.close()


def echo_samples(conn, n: int, gap: float = 0.0) -> list[float]:
    """n keystrokes, one at a time: send, wait for its echo (ms); erased again, untimed.
    gap: seconds of quiet before each timed keystroke (0 = back to back)."""
    samples = []
    for i in range(n):
        if gap:
            time.sleep(gap)
        key = KEYS[i % len(KEYS):i % len(KEYS) + 1]
        buf = b""
        t0 = time.perf_counter()
        conn.send(key)
        while key not in buf:
            buf += conn.recv(10) or b""
        samples.append((time.perf_counter() - t0) * 1000)
        conn.send(b"\x7f")  # backspace: the line stays short, no wrapping redraws
        buf = b""
        while b"\x08" not in buf:
            buf += conn.recv(10) or b""
    return samples


def stream(conn, prompt: bytes, nbytes: int = STREAM_BYTES, timeout: float = 120) -> tuple[float, int, int]:
    """Run the flood command; (MB/s, frames, bytes) until its end marker arrives,
    then read on to the prompt, so the next command starts on a quiet terminal."""
    conn.send(STREAM_CMD % nbytes)
    frames0, got, tail = conn.frames, 0, b""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    while STREAM_END not in tail:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"stream: {got} of {nbytes} bytes after {timeout} s")
        data = conn.recv(10) or b""
        got += len(data)
        tail = (tail + data)[-64:]
    secs = time.perf_counter() - t0
    frames = conn.frames - frames0
    while not tail.removesuffix(baselines.DSR).endswith(prompt):
        tail = (tail + (conn.recv(10) or b""))[-64:]
    return nbytes / secs / 1e6, frames, got


def ctrl_c(conn, prompt: bytes, reps: int) -> list[float]:
    """`yes`, then ^C once it floods: ms until the prompt is the last thing on screen."""
    samples = []
    for _ in range(reps):
        conn.send(b"yes\r")
        got = 0
        while got < 512 * 1024:
            got += len(conn.recv(10) or b"")
        t0 = time.perf_counter()
        conn.send(b"\x03")
        baselines.wait_prompt(conn, prompt, timeout=30)
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def _lab_terminal(browser: Browser) -> tuple[LabConn, str]:
    session = browser.start()
    term = browser.terminal(session["ws"])
    term.expect(PROMPT, timeout=60)
    conn = LabConn(term)
    baselines.drain(conn)
    return conn, session["id"]


TYPING_GAP = 0.02  # 20 ms of quiet before a keystroke: a fast typist's pace, > the relay's 4 ms batch


def _both(conn, n: int, n_gap: int) -> tuple[list[float], list[float]]:
    """(back-to-back samples, samples at typing pace), after a short warm-up."""
    echo_samples(conn, 20)
    return echo_samples(conn, n), echo_samples(conn, n_gap, gap=TYPING_GAP)


def run_echo(ctx) -> list[Figure]:
    """Section 4."""
    n = ctx.args.keys
    n_gap = min(n, 200)
    tconn = ctx.terminado().connect()
    baselines.wait_prompt(tconn, baselines.PROMPT)
    t_samples, t_gap = _both(tconn, n, n_gap)
    tconn.close()
    pty = baselines.BarePty()
    baselines.wait_prompt(pty, baselines.PROMPT)
    p_samples, _ = _both(pty, n, 0)
    pty.close()
    conn, sid = _lab_terminal(ctx.browser)
    try:
        l_samples, l_gap = _both(conn, n, n_gap)
    finally:
        conn.close()
        ctx.browser.stop(sid)
    ctx.anchors["lab_echo_p99_ms"] = pct(l_samples, 99)
    sec = "4. Keystroke echo (WebSocket → Redis → relay → PTY → back)"
    t50, t99 = pct(t_samples, 50), pct(t_samples, 99)
    return [
        Figure(sec, "echo p50, back to back", pct(l_samples, 50), "ms", "terminado p50", t50, target=("<=", 3),
               ratio_target=("<=", 3 / 0.4), ratio_note="3 ms / 0.4 ms", n=n, extra={"samples": l_samples}),
        Figure(sec, "echo p99, back to back", pct(l_samples, 99), "ms", "terminado p99", t99, target=("<=", 20),
               ratio_target=("<=", 1.0), ratio_note="better than terminado's p99", n=n),
        Figure(sec, "echo p50, typing pace (20 ms apart)", pct(l_gap, 50), "ms", "terminado p50", pct(t_gap, 50),
               target=("<=", 3), ratio_target=("<=", 3 / 0.4), ratio_note="3 ms / 0.4 ms", n=n_gap,
               extra={"samples": l_gap, "terminado_samples": t_gap}),
        Figure(sec, "echo p99, typing pace (20 ms apart)", pct(l_gap, 99), "ms", "terminado p99", pct(t_gap, 99),
               target=("<=", 20), ratio_target=("<=", 1.0), ratio_note="better than terminado's p99", n=n_gap),
        Figure(sec, "echo p50 vs bare PTY", pct(l_samples, 50), "ms", "bare PTY p50", pct(p_samples, 50), n=n),
        Figure(sec, "echo p99 vs bare PTY", pct(l_samples, 99), "ms", "bare PTY p99", pct(p_samples, 99), n=n),
        Figure(sec, "terminado echo p50 (anchor, as DESIGN.md's 0.4 ms)", t50, "ms", "DESIGN.md", 0.4, n=n,
               extra={"p99": t99, "samples": t_samples}),
    ]


def run_output(ctx) -> list[Figure]:
    """Section 5."""
    reps = 1 if ctx.args.quick else 3
    creps = 2 if ctx.args.quick else 5
    tconn = ctx.terminado().connect()
    baselines.wait_prompt(tconn, baselines.PROMPT)
    t_runs = [stream(tconn, baselines.PROMPT) for _ in range(reps)]
    t_ctrl = ctrl_c(tconn, baselines.PROMPT, creps)
    tconn.close()
    conn, sid = _lab_terminal(ctx.browser)
    try:
        l_runs = []
        for _ in range(reps):
            l_runs.append(stream(conn, PROMPT))
        l_ctrl = ctrl_c(conn, PROMPT, creps)
    finally:
        conn.close()
        ctx.browser.stop(sid)
    best = lambda runs: max(runs, key=lambda r: r[0])  # noqa: E731 — the least disturbed run
    lab, term = best(l_runs), best(t_runs)
    sec = "5. Output (16 MiB of `x` to an acking WebSocket client)"
    return [
        Figure(sec, "throughput (best of runs)", lab[0], "MB/s", "terminado", term[0], target=(">=", 20),
               ratio_target=(">=", 1 / 1.5), ratio_note="within 1.5× of terminado", n=reps,
               extra={"runs_mb_s": [r[0] for r in l_runs], "terminado_runs_mb_s": [r[0] for r in t_runs]}),
        Figure(sec, "binary frames per 16 MiB", lab[1], "frames", "terminado messages", term[1], target=("<=", 500),
               n=reps, extra={"bytes": lab[2]}),
        Figure(sec, "Ctrl-C after `yes` → prompt, p50", pct(l_ctrl, 50), "ms", "terminado p50", pct(t_ctrl, 50),
               target=("<=", 200), n=creps, extra={"samples": l_ctrl, "terminado_samples": t_ctrl}),
        Figure(sec, "Ctrl-C after `yes` → prompt, max", max(l_ctrl), "ms", "terminado max", max(t_ctrl),
               target=("<=", 200), n=creps),
    ]

"""The user's path, proven on every commit: a clean clone of this repository's HEAD,
`./lab up` there (its own .venv from requirements.txt alone, never the test
requirements), sign in, start a sandbox through the API, type over the WebSocket, then
Ctrl-C -- and nothing of that lab is left: no container, mount, cgroup, session
directory or process.

This is what a new user does after reading the README. A runtime dependency missing from
requirements.txt (kombu's `packaging`, found by hand once) fails here, not in their hands.
"""
from __future__ import annotations

import ctypes
import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port, port_open, wait_for

ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox, pytest.mark.skipif(not IS_ROOT, reason="./lab up needs root"),
    # ./lab up brings its own database (SQLite, as a new user has): once per CI run is enough.
    pytest.mark.skipif(os.environ.get("LAB_TEST_DATABASE", "sqlite") != "sqlite",
                       reason="runs in the SQLite pass; ./lab up uses its own database"),
]

READY = re.compile(r"==> ready: (http://[\w.:\[\]-]+)/")  # the line `./lab up` prints once web and a worker are up
WEB_ON = re.compile(r"==> web on (http://[\w.:\[\]-]+)")  # the older line, printed before either was up
# Only what a fresh login shell has, plus pip's own settings (a mirror or wheel directory).
KEEP_ENV = ("HOME", "LANG", "LC_ALL", "TERM", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _session_leader_dying_with_us() -> None:
    """Own process group (so Ctrl-C reaches it as a terminal's would), and SIGTERM to
    `./lab up` if pytest dies: its trap then stops everything it started."""
    os.setsid()
    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


class FreshLab:
    """A clone of HEAD in a temp folder and the `./lab up` running from it."""

    def __init__(self) -> None:
        self.top = Path(tempfile.mkdtemp(prefix="labfirstrun-", dir="/tmp"))
        os.chmod(self.top, 0o711)  # the sandbox's root (an unprivileged host uid) traverses it
        self.clone = self.top / "clone"
        self.data = self.top / "data"
        self.log = self.top / "lab-up.log"
        self.host = f"firstrun{os.getpid()}"
        self.port, self.redis_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.env = {k: v for k, v in os.environ.items() if k in KEEP_ENV or k.startswith("PIP_")}
        self.env.update(PATH=SYSTEM_PATH, LAB_PORT=str(self.port), LAB_REDIS_PORT=str(self.redis_port),
                        LAB_DATA_DIR=str(self.data), LAB_HOST_NAME=self.host)

    # -- the user's steps ------------------------------------------------------------

    def clone_head(self) -> str:
        """git clone of the repository the tests run from (committed HEAD only)."""
        head = self.git("-C", str(ROOT), "rev-parse", "HEAD").strip()
        self.git("clone", "--quiet", "--no-hardlinks", str(ROOT), str(self.clone))
        self.git("-C", str(self.clone), "checkout", "--quiet", head)
        return head

    def git(self, *args: str) -> str:
        proc = subprocess.run(["git", *args], capture_output=True, text=True)
        if proc.returncode:
            pytest.fail(f"git {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}", pytrace=False)
        return proc.stdout

    def up(self) -> None:
        """`./lab up`, its output to a log file."""
        self.proc = subprocess.Popen(["./lab", "up"], cwd=self.clone, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                     preexec_fn=_session_leader_dying_with_us)

    def output(self, lines: int = 120) -> str:
        """The last lines `./lab up` printed (pip's noise about extra indexes left out)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no output)"
        kept = [ln for ln in text.splitlines() if "is ignored: it is neither a file nor a directory" not in ln]
        return "\n".join(kept[-lines:])

    def fail(self, what: str) -> None:
        pytest.fail(f"{what}\n---- ./lab up (clone {self.clone}, host {self.host}) ----\n{self.output()}", pytrace=False)

    def wait_ready(self, timeout: float = 600) -> str:
        """The URL once `./lab up` says ready (or, before that line exists, once the page
        answers and the worker host's heartbeat is in Redis)."""
        import redis

        r = redis.Redis(port=self.redis_port, socket_timeout=2)

        def ready() -> str | None:
            if self.proc.poll() is not None:
                self.fail(f"./lab up exited with status {self.proc.returncode} before it was ready")
            text = self.output(lines=10_000)
            if m := READY.search(text):
                return m.group(1) + "/"
            if WEB_ON.search(text) and port_open(self.port):
                try:
                    return r.get(f"lab:host:{self.host}") and self.url + "/"
                except redis.RedisError:
                    return None
            return None

        try:
            url = wait_for(ready, timeout=timeout, what="./lab up to be ready", interval=0.2)
        except TimeoutError as exc:
            self.fail(str(exc))
        # "ready" promises both: the page answers and a worker host has sent its heartbeat.
        assert r.get(f"lab:host:{self.host}"), f"./lab up said ready without a worker heartbeat\n{self.output()}"
        return url

    def manage(self, *args: str) -> str:
        """manage.py in the clone, with its venv and the environment `./lab up` runs with."""
        env = dict(self.env, DJANGO_SETTINGS_MODULE="labsite.settings.dev", REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0")
        proc = subprocess.run([str(self.clone / ".venv" / "bin" / "python"), "manage.py", *args], cwd=self.clone,
                              env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode:
            self.fail(f"manage.py {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def ctrl_c(self, timeout: float = 120) -> int:
        """SIGINT to the whole process group, as a terminal's Ctrl-C; waits for the exit."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"./lab up did not exit within {timeout:g} s of Ctrl-C")

    # -- what must be gone afterwards ------------------------------------------------

    def runc_roots(self) -> list[Path]:
        return [p for p in (Path("/run/container-lab") / self.host, Path("/run/container-lab") / f"{self.host}.relay") if p.exists()]

    def cgroups(self) -> list[Path]:
        pattern = f"container-lab/{self.host}"
        return sorted(Path("/sys/fs/cgroup").glob(f"*/{pattern}")) + sorted(Path("/sys/fs/cgroup").glob(pattern))

    def session_dirs(self) -> list[Path]:
        sessions = self.data / "hosts" / self.host / "sessions"
        return sorted(sessions.iterdir()) if sessions.is_dir() else []

    def processes(self) -> dict[int, str]:
        """Processes whose working directory, executable or command line is in the temp
        folder, or that sit in one of this host's sandbox cgroups."""
        top, found = str(self.top), {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                links = []
                for name in ("cwd", "exe"):
                    try:
                        links.append(os.readlink(entry / name))
                    except OSError:
                        pass
                cgroup = (entry / "cgroup").read_text()
            except OSError:
                continue  # gone meanwhile
            if top in cmdline or any(link.startswith(top) for link in links) or f"/container-lab/{self.host}/" in cgroup:
                status = dict(ln.split(":\t", 1) for ln in (entry / "status").read_text().splitlines() if ":\t" in ln)
                found[int(entry.name)] = f"{cmdline or '[' + status.get('Name', '?') + ']'} (state {status.get('State')}, ppid {status.get('PPid')})"
        return found

    def leftovers(self) -> dict[str, object]:
        from sandbox.mounts import mounts_under

        found = {"runc state": self.runc_roots(), "mounts": mounts_under(self.top), "cgroups": self.cgroups(),
                 "session directories": self.session_dirs(), "processes": self.processes()}
        return {what: items for what, items in found.items() if items}

    # -- tidy up after a failure, touching only what is this lab's ---------------------

    def tear_down(self) -> None:
        from sandbox.mounts import mounts_under, unmount

        if self.proc is not None and self.proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                    self.proc.wait(60)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
        runc_root = Path("/run/container-lab") / self.host
        if runc_root.is_dir():
            listed = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"], capture_output=True, text=True)
            for cid in listed.stdout.split():
                subprocess.run(["runc", "--root", str(runc_root), "delete", "-f", cid], capture_output=True)
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for target in sorted(mounts_under(self.top), key=lambda p: len(p.parts), reverse=True):
            try:
                unmount(target)
            except Exception:
                pass
        for cg in self.cgroups():
            for d in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [cg]:
                try:
                    d.rmdir()
                except OSError:
                    pass
        for d in self.runc_roots():
            shutil.rmtree(d, ignore_errors=True)
        if not mounts_under(self.top):
            shutil.rmtree(self.top, ignore_errors=True)


class Browser:
    """What the page does over HTTP: a cookie jar, the CSRF token, JSON calls."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.jar if c.name == name)

    def request(self, method: str, path: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def sign_in(self, username: str, password: str) -> None:
        status, page = self.request("GET", "/accounts/login/")
        assert status == 200, page[:500]
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
        form = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token}).encode()
        status, page = self.request("POST", "/accounts/login/", form, {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200 and any(c.name == "sessionid" for c in self.jar), f"sign-in failed: {status} {page[:500]!r}"

    def api(self, method: str, path: str, payload: dict | None = None) -> tuple[int, object]:
        headers = {"X-CSRFToken": self.cookie("csrftoken"), "Content-Type": "application/json"}
        status, body = self.request(method, path, json.dumps(payload).encode() if payload is not None else None, headers)
        return status, json.loads(body) if body else None


def test_a_clean_clone_comes_up_serves_a_terminal_and_leaves_nothing_after_ctrl_c():
    from websockets.sync.client import connect

    from tests.labs.test_sessions import Terminal

    lab = FreshLab()
    timings: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        lab.clone_head()
        assert not (lab.clone / ".venv").exists()
        lab.up()
        url = lab.wait_ready()
        timings["up to ready"] = time.monotonic() - t0
        assert (lab.clone / ".venv" / ".installed-requirements.txt").exists()
        assert not (lab.clone / ".venv" / ".installed-requirements-dev.txt").exists(), "./lab up used the test requirements"

        lab.manage("shell", "-c", "from django.contrib.auth import get_user_model; "
                   "get_user_model().objects.create_user('newcomer', 'newcomer@example.org', 'first-run-pw-42')")
        browser = Browser(url)
        browser.sign_in("newcomer", "first-run-pw-42")
        status, labs = browser.api("GET", "/api/labs/")
        assert status == 200 and labs, labs
        t1 = time.monotonic()
        status, session = browser.api("POST", "/api/sessions/", {"lab": labs[0]["slug"]})
        assert status == 201, session

        def ready():
            _, s = browser.api("GET", f"/api/sessions/{session['id']}/")
            if s["state"] in ("failed", "lost", "stopped"):
                lab.fail(f"the sandbox did not start: {s}")
            return s["state"] == "ready" and s

        session = wait_for(ready, timeout=90, what="the sandbox to be ready")
        timings["start to ready"] = time.monotonic() - t1
        ws_url = browser.url.replace("http", "ws", 1) + session["ws"]
        with connect(ws_url, additional_headers={"Cookie": f"sessionid={browser.cookie('sessionid')}"},
                     origin=browser.url, open_timeout=10) as ws:
            term = Terminal(ws)
            term.send("echo $((6*7))\r")
            term.expect("\r\n42\r\n", timeout=30)
        assert lab.session_dirs(), "a live sandbox should have its session directory (the check below would prove nothing)"

        t2 = time.monotonic()
        lab.ctrl_c()  # with the sandbox still live, as a user leaves it
        timings["Ctrl-C to exit"] = time.monotonic() - t2
        if left := lab.leftovers():  # at once: when the prompt is back, everything must be gone
            lab.fail(f"left behind after Ctrl-C: {left}")
        print("first run timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    finally:
        lab.tear_down()

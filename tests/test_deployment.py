"""The production deployment, started on this machine as far as it can be without a
Docker engine: every service of docker-compose.yml that the Dockerfile's image runs is
started with the compose file's own command and environment (labsite.settings.prod), on
a private PostgreSQL and Redis standing in for the `postgres` and `redis` services, each
service with its own data directory unless the compose file shares a volume between them.
A trainee then signs in behind a TLS proxy's headers and gets a working sandbox.

What differs from `docker compose up`, and only this: host names `postgres`/`redis` become
127.0.0.1 ports; the web binds 127.0.0.1 on a free port instead of 0.0.0.0:8000; /tmp and
/var/lib paths are temp directories; LAB_HOST_NAME is unique to this run. The image itself
(Dockerfile) is not built here: tests/test_compose.py checks that it installs the same
package lists as ./lab.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import requests
import yaml

from sandbox.relay.spawn import die_with_parent
from tests.postgres import Postgres, pg_bin, start_postgres
from tests.support import free_port, port_open, start_redis, wait_for

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SITE = "lab.example.org"
METRICS_TOKEN = secrets.token_urlsafe(24)
PROXY = {"Host": SITE, "X-Forwarded-Proto": "https"}  # what the TLS-terminating proxy adds

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(os.geteuid() != 0, reason="the worker service runs runc: root"),
    pytest.mark.skipif(pg_bin("initdb") is None, reason="PostgreSQL is not installed"),
]


def substitute(value: str, dotenv: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} from a .env."""
    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        if dotenv.get(name):
            return dotenv[name]
        if op == ":?":
            raise AssertionError(f"compose requires {name}: {arg}")
        return arg if op == ":-" else ""
    return re.sub(r"\$\{(\w+)(:-|:\?)?([^}]*)\}", one, str(value))


@dataclass
class Deployment:
    url: str
    redis_port: int
    host: str
    pg: Postgres
    dirs: dict[str, Path]
    logs: dict[str, Path]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    env: dict[str, dict] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)

    def start(self, *names: str) -> None:
        """`docker compose start NAME…`: each service's command; waits until the web serves
        and, once a sandbox host's services run, until its relay's heartbeat is in Redis."""
        for name in names:
            self.procs[name] = _spawn(self.commands[name], self.env[name], self.logs[name])
        if "web" in names:
            port = int(self.url.rsplit(":", 1)[1])
            wait_for(lambda: _alive(self) and port_open(port), timeout=180, what="web: migrate, import, uvicorn")
        if set(names) - {"web", "beat"}:
            import redis as redis_lib

            r = redis_lib.Redis(port=self.redis_port)
            wait_for(lambda: _alive(self) and r.get(f"lab:host:{self.host}"), timeout=240,
                     what="sandbox host: image build, relay heartbeat")

    def stop(self, name: str) -> None:
        """`docker compose stop NAME`: SIGTERM to the service (and its children), then wait."""
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def manage(self, *args: str, service: str = "web") -> str:
        """`docker compose exec web python manage.py …`."""
        proc = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env[service],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout


def _service_env(svc: dict, dotenv: dict, pg: Postgres, redis_port: int, data_dir: Path) -> dict[str, str]:
    env = {k: substitute(v, dotenv) for k, v in (svc.get("environment") or {}).items()}
    env["DATABASE_URL"] = env["DATABASE_URL"].replace("@postgres:5432/", f"@127.0.0.1:{pg.port}/")
    env["REDIS_URL"] = env["REDIS_URL"].replace("redis://redis:6379/", f"redis://127.0.0.1:{redis_port}/")
    env["LAB_DATA_DIR"] = str(data_dir)
    # The image's environment (Dockerfile ENV): its virtualenv first on PATH.
    return {"PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
            "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", **env}


def _command(svc: dict, tmp: Path, web_port: int) -> str:
    cmd = svc["command"] if isinstance(svc["command"], str) else " ".join(svc["command"])
    cmd = cmd.replace("--host 0.0.0.0 --port 8000", f"--host 127.0.0.1 --port {web_port}")
    return cmd.replace("/tmp/", f"{tmp}/")


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    tmp = Path(tempfile.mkdtemp(prefix="labprod-", dir="/tmp"))
    os.chmod(tmp, 0o711)
    pg = start_postgres(tmp / "pg", password=secrets.token_urlsafe(16))
    redis_proc, redis_port = start_redis(str(tmp))
    host = f"prod{os.getpid()}"
    dotenv = {"SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": SITE, "POSTGRES_PASSWORD": pg.password,
              "METRICS_TOKEN": METRICS_TOKEN,
              "CSRF_TRUSTED_ORIGINS": f"https://{SITE}", "LAB_HOST_NAME": host}
    web_port = free_port()
    services = {name: svc for name, svc in COMPOSE["services"].items() if "image" not in svc}
    # A named volume mounted at the data directory is shared; a service without one has its own.
    dirs: dict[str, Path] = {}
    for name, svc in services.items():
        volume = next((v.split(":")[0] for v in svc.get("volumes", []) if ":/var/lib/container-lab" in v), None)
        # (A bind mount's host path, as the sandbox-host services share, becomes one dir too.)
        dirs[name] = tmp / (f"volume-{volume.strip('/').replace('/', '_')}" if volume else f"own-{name}")
        dirs[name].mkdir(exist_ok=True)
        os.chmod(dirs[name], 0o711)
    dep = Deployment(url=f"http://127.0.0.1:{web_port}", redis_port=redis_port, host=host, pg=pg, dirs=dirs,
                     logs={name: tmp / f"{name}.log" for name in services})
    for name, svc in services.items():
        dep.env[name] = _service_env(svc, dotenv, pg, redis_port, dirs[name])
        dep.commands[name] = _command(svc, tmp, web_port)
    try:
        # The web migrates on start; the other services need its tables (in production they
        # retry their database connection until then).
        dep.start("web")
        dep.start(*[name for name in services if name != "web"])
        yield dep
    finally:
        for name in sorted(dep.procs, key=lambda n: n != "web"):  # web first, then the worker stops its sandboxes
            dep.stop(name)
        redis_proc.terminate()
        redis_proc.wait(10)
        pg.stop()
        try:
            (Path("/run/container-lab") / host).rmdir()  # runc's state root of this host: empty by now
        except OSError:
            pass
        from sandbox.mounts import mounts_under

        if os.environ.get("LAB_KEEP_PROD_LOGS"):
            for name, log in dep.logs.items():
                shutil.copy(log, f"/tmp/prodlog-{name}.log")
        if not mounts_under(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _spawn(cmd: str, env: dict, log: Path) -> subprocess.Popen:
    def child() -> None:
        os.setsid()  # its own process group: stopping a service stops its children (the relay)
        die_with_parent()

    return subprocess.Popen(["/bin/sh", "-c", cmd], cwd=ROOT, env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, preexec_fn=child)


def _alive(dep: Deployment) -> bool:
    for name, proc in dep.procs.items():
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited ({proc.returncode}): {dep.logs[name].read_text()[-3000:]}")
    return True


class Browser:
    """A person's browser behind the TLS proxy: cookies are `Secure`, so they are kept here
    and sent by hand (requests would not send them over the proxy's plain-HTTP hop)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.cookies: dict[str, str] = {}

    def _headers(self, extra: dict | None = None) -> dict:
        h = {**PROXY, "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), **(extra or {})}
        if "csrftoken" in self.cookies:
            h.update({"X-CSRFToken": self.cookies["csrftoken"], "Origin": f"https://{SITE}",
                      "Referer": f"https://{SITE}/"})
        return h

    def request(self, method: str, path: str, **kw) -> requests.Response:
        r = requests.request(method, self.url + path, headers=self._headers(kw.pop("headers", None)),
                             allow_redirects=False, timeout=30, **kw)
        for c in r.cookies:
            self.cookies[c.name] = c.value
        return r


def sign_in(dep: Deployment, name: str, password: str) -> Browser:
    """The login form, as a person behind the proxy fills it."""
    browser = Browser(dep.url)
    login = browser.request("GET", "/accounts/login/")
    assert login.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    signed = browser.request("POST", "/accounts/login/", data={"csrfmiddlewaretoken": token, "username": name,
                                                               "password": password, "next": "/"})
    assert signed.status_code == 302 and "sessionid" in browser.cookies, signed.text[:500]
    return browser


def start_sandbox(browser: Browser) -> tuple[str, str]:
    """(session id, lab slug) of a ready sandbox of the first lab in the catalogue."""
    labs = browser.request("GET", "/api/labs/").json()
    slug = labs[0]["slug"] if isinstance(labs, list) else labs["labs"][0]["slug"]
    started = browser.request("POST", "/api/sessions/", json={"lab": slug})
    assert started.status_code in (200, 201), started.text
    sid = started.json()["id"]
    wait_for(lambda: (d := browser.request("GET", f"/api/sessions/{sid}/").json())["state"] == "ready" and d
             or (d["state"] in ("failed", "lost") and pytest.fail(d["message"])), timeout=60, what="the sandbox")
    return sid, slug


def run_in_terminal(browser: Browser, sid: str, command: str, expect: str) -> None:
    """Type a command into the sandbox's terminal over the WebSocket; wait for its output."""
    from websockets.sync.client import connect

    ws_url = browser.url.replace("http", "ws") + f"/ws/terminal/{sid}/"
    with connect(ws_url, additional_headers={"Cookie": f"sessionid={browser.cookies['sessionid']}", **PROXY},
                 origin=f"https://{SITE}", open_timeout=15) as ws:
        ws.send(f"{command}\r".encode())
        out = b""
        deadline = time.monotonic() + 20
        while expect.encode() not in out:
            assert time.monotonic() < deadline, out[-500:]
            try:
                msg = ws.recv(timeout=1)
            except TimeoutError:
                continue
            if isinstance(msg, bytes):
                out += msg


def stop_sandbox(browser: Browser, sid: str) -> None:
    assert browser.request("DELETE", f"/api/sessions/{sid}/").status_code in (200, 202, 204)
    wait_for(lambda: browser.request("GET", f"/api/sessions/{sid}/").json()["state"] == "stopped", timeout=60,
             what="stopped")


def add_trainee(dep: Deployment, name: str) -> str:
    """`docker compose exec web python manage.py shell -c …`: a trainee account; its password."""
    password = f"{name}-pw-" + secrets.token_hex(6)
    dep.manage("shell", "-c", "from django.contrib.auth.models import User; "
               f"User.objects.create_user('{name}', '{name}@example.org', '{password}')")
    return password


def scrape(dep: Deployment) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    r = requests.get(dep.url + "/metrics", headers={**PROXY, "Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(r.text) for s in f.samples}


def test_production_services_start_from_the_compose_file_and_a_trainee_gets_a_working_sandbox(deployment):
    dep = deployment
    # Behind the proxy only: plain HTTP is sent to HTTPS, HTTPS pages carry HSTS, unknown hosts are refused.
    plain = requests.get(dep.url + "/accounts/login/", headers={"Host": SITE}, allow_redirects=False, timeout=30)
    assert plain.status_code == 301 and plain.headers["Location"] == f"https://{SITE}/accounts/login/"
    assert requests.get(dep.url + "/", headers={"Host": "evil.example.net", "X-Forwarded-Proto": "https"},
                        timeout=30).status_code == 400
    login = requests.get(dep.url + "/accounts/login/", headers=PROXY, timeout=30)
    assert "max-age=31536000" in login.headers["Strict-Transport-Security"] and "Secure" in login.headers["Set-Cookie"]
    assert requests.get(dep.url + "/metrics", headers=PROXY, timeout=30).status_code == 401

    password = add_trainee(dep, "ada")
    browser = sign_in(dep, "ada", password)
    sid, slug = start_sandbox(browser)
    marker = f"kx{secrets.token_hex(4)}"  # typed by the trainee: must reach the shell, never a log
    run_in_terminal(browser, sid, f"echo {marker}-$((6*7))", f"{marker}-42")
    # Metrics from the worker's pool children, read by the web through Redis.
    metrics = scrape(dep)
    assert metrics[("lab_sandbox_starts_total", (("host", dep.host),))] >= 1
    assert metrics[("lab_host_up", (("host", dep.host),))] == 1.0
    assert metrics[("lab_active_trainees", (("lab", slug),))] == 1.0

    stop_sandbox(browser, sid)

    # The web is another "host": it reached the sandbox only through Celery and Redis, and
    # nothing of the sandbox is in its own data directory.
    assert dep.dirs["web"] != dep.dirs["worker"]
    assert not (dep.dirs["web"] / "hosts").exists() and not (dep.dirs["web"] / "images").exists()
    assert (dep.dirs["worker"] / "images").exists()

    # Logs: every log event of every service is one JSON line with its service and host;
    # the worker's and the web's name the session; no password, keystroke or secret anywhere.
    # (The compose commands' one-shot steps — migrate, labs import, image build — and Celery's
    # start banner print plain progress text to stdout: that is command output, not log events.)
    events: dict[str, list[dict]] = {}
    plain_log = re.compile(r"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\S* )?\[?(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
    for name, path in dep.logs.items():
        text = path.read_text()
        assert password not in text and marker not in text and dep.env["web"]["SECRET_KEY"] not in text, name
        for line in text.splitlines():
            if line.startswith("{"):
                events.setdefault(name, []).append(json.loads(line))
            else:
                assert not plain_log.match(line), f"{name} logged a line that is not JSON: {line}"
    assert set(events) == set(dep.logs), "every service logs JSON events"
    assert all(e["service"] and e["host"] and e["level"] and e["time"] for es in events.values() for e in es)
    assert any(e.get("session_id") == sid and e.get("user_id") and e.get("lab") == slug for e in events["worker"])
    assert any(e.get("session_id") == sid and e.get("request_id") for e in events["web"])
    # The relay logs JSON too, whether it is the worker's child or a service of its own.
    assert any(e["service"] == "relay" for es in events.values() for e in es)


def test_upgrade_path_and_backup_restore_as_docs_operations_describe(deployment, tmp_path):
    dep = deployment
    password = add_trainee(dep, "grace")
    browser = sign_in(dep, "grace", password)
    sid, _ = start_sandbox(browser)
    run_in_terminal(browser, sid, "echo before-$((40+2))", "before-42")

    # Upgrade: migrate with the new code, then restart the web; live sandboxes are untouched.
    dep.stop("web")
    assert "No migrations to apply" in dep.manage("migrate", "--noinput")
    dep.manage("migrate", "--check")
    dep.start("web")
    run_in_terminal(browser, sid, "echo after-$((40+3))", "after-43")  # same sandbox, same sign-in
    stop_sandbox(browser, sid)  # its recording moves into the database
    cast = browser.request("GET", f"/api/sessions/{sid}/recording")
    assert cast.status_code == 200 and "after-43" in cast.text

    # Backup: the database holds accounts, progress and the recordings of ended sessions.
    dump = tmp_path / "lab.dump"
    dep.pg.tool("pg_dump", "-Fc", "-d", "lab", "-f", str(dump))
    # Disaster: the database is gone. Restore with the services stopped, then start them.
    for name in list(dep.procs):
        dep.stop(name)
    dep.pg.tool("dropdb", "lab")
    dep.pg.tool("createdb", "-O", "lab", "lab")
    dep.pg.tool("pg_restore", "--no-owner", "-d", "lab", str(dump))
    dep.start("web")
    dep.start(*[name for name in dep.commands if name != "web"])
    restored = browser.request("GET", f"/api/sessions/{sid}/recording")  # the same browser session survived too
    assert restored.status_code == 200 and restored.text == cast.text
    again = sign_in(dep, "grace", password)
    new_sid, _ = start_sandbox(again)  # and the restored deployment runs sandboxes
    run_in_terminal(again, new_sid, "echo restored-$((6*7))", "restored-42")
    stop_sandbox(again, new_sid)

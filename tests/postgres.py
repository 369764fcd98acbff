"""A private PostgreSQL server for the tests: initdb in a temp dir as the `postgres` user,
a free port on 127.0.0.1, a `lab` role and database; it dies with its parent. Like the
compose file's postgres image (POSTGRES_USER), `lab` is the server's superuser."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sandbox.relay.spawn import die_with_parent
from tests.support import free_port, wait_for

BIN = Path("/usr/lib/postgresql")


def pg_bin(name: str) -> Path | None:
    """A PostgreSQL server binary from Debian's packages (the newest installed version)."""
    found = sorted(BIN.glob(f"*/bin/{name}"), key=lambda p: int(p.parent.parent.name))
    return found[-1] if found else None


def _as_postgres() -> None:
    user = pwd.getpwnam("postgres")
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    die_with_parent()  # after setuid, which would clear it


@dataclass
class Postgres:
    proc: subprocess.Popen
    port: int
    password: str

    socket_dir: Path | None = None

    def tool(self, name: str, *args: str, **kw) -> subprocess.CompletedProcess:
        """Run a PostgreSQL client tool (pg_dump, pg_restore, dropdb, createdb) as `lab`."""
        env = dict(os.environ, PGPASSWORD=self.password)
        return subprocess.run([name, "-h", "127.0.0.1", "-p", str(self.port), "-U", "lab", *args],
                              env=env, capture_output=True, check=True, **kw)

    @property
    def url(self) -> str:
        return f"postgres://lab:{self.password}@127.0.0.1:{self.port}/lab"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # smart shutdown
            self.proc.wait(30)


def start_postgres(tmp: Path, password: str) -> Postgres:
    """initdb, start, create the lab role and database."""
    data, sock = tmp / "pgdata", tmp / "pgsock"
    for d in (data, sock):
        d.mkdir(parents=True)
        shutil.chown(d, "postgres", "postgres")
    os.chmod(tmp, 0o755)
    subprocess.run([str(pg_bin("initdb")), "-D", str(data), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"],
                   check=True, capture_output=True, preexec_fn=_as_postgres)
    port = free_port()
    proc = subprocess.Popen([str(pg_bin("postgres")), "-D", str(data), "-p", str(port), "-k", str(sock),
                             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                            stdout=subprocess.DEVNULL, stderr=(tmp / "postgres.log").open("wb"),
                            preexec_fn=_as_postgres)
    psql = ["psql", "-h", str(sock), "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1"]

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"postgres exited: {(tmp / 'postgres.log').read_text()[-2000:]}")
        return subprocess.run([*psql, "-c", "select 1"], capture_output=True).returncode == 0

    wait_for(ready, timeout=30, what="postgres")
    subprocess.run([*psql, "-c", f"create role lab login superuser password '{password}'", "-c", "create database lab owner lab"],
                   check=True, capture_output=True)
    return Postgres(proc, port, password, sock)

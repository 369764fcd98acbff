"""Fixtures for the sandbox tests. Names are prefixed by their owner so the files of
tests/sandbox/ can share this module: `escape_*` belong to test_escape.py and
test_limits.py."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Callable, Iterator

import pytest

from tests.conftest import IS_ROOT


@dataclass
class EscapeSandbox:
    """One live sandbox started through sandbox.service, for attacks from inside."""

    cfg: object
    sid: str
    pid: int

    @property
    def layout(self):
        from sandbox.service import layout_for

        return layout_for(self.cfg, self.sid)

    def sh(self, script: str, *, timeout: float = 10.0):
        """Run a script as root inside the sandbox; returns ExecResult(exit_code, output)."""
        from sandbox.service import sandbox_exec

        return sandbox_exec(self.cfg, self.sid, script, timeout=timeout)

    def stop(self) -> None:
        from sandbox.service import sandbox_stop

        sandbox_stop(self.cfg, self.sid)


@dataclass
class _Factory:
    started: list[EscapeSandbox] = field(default_factory=list)


@pytest.fixture
def escape_sandbox_factory(worker) -> Iterator[Callable[..., EscapeSandbox]]:
    """Start sandboxes of lab/base:latest on the test worker's host; all stopped at teardown."""
    if not IS_ROOT:
        pytest.skip("sandboxes need root")
    from labs.hostconfig import host_config
    from sandbox.runtime import Limits
    from sandbox.service import SandboxRequest, sandbox_start, sandbox_stop

    cfg = host_config()
    made = _Factory()

    def start(**limits) -> EscapeSandbox:
        sid = secrets.token_hex(8)
        pid = sandbox_start(cfg, SandboxRequest(sid=sid, image="lab/base:latest", hostname=f"sb-{sid[:6]}",
                                                limits=Limits(**limits)))
        box = EscapeSandbox(cfg, sid, pid)
        made.started.append(box)
        return box

    yield start
    for box in made.started:
        sandbox_stop(cfg, box.sid)


@pytest.fixture
def escape_sandbox(escape_sandbox_factory) -> EscapeSandbox:
    """One sandbox with the default limits."""
    return escape_sandbox_factory()


@pytest.fixture(scope="session")
def escape_probe_binary(tmp_path_factory) -> bytes:
    """tests/sandbox/escape_probe.c built static without libc (a few KiB), for raw system calls."""
    import platform
    import shutil
    import subprocess
    from pathlib import Path

    if platform.machine() != "x86_64" or not shutil.which("gcc"):
        pytest.skip("the system-call prober needs gcc on x86_64")
    out = tmp_path_factory.mktemp("probe") / "probe"
    src = Path(__file__).with_name("escape_probe.c")
    subprocess.run(["gcc", "-Os", "-s", "-static", "-nostdlib", "-fno-stack-protector", "-fno-builtin",
                    "-o", str(out), str(src)], check=True)
    return out.read_bytes()


def escape_install_probe(box: EscapeSandbox, blob: bytes) -> None:
    """Copy the prober into a sandbox as /bin/probe (base64 through runc exec)."""
    import base64

    res = box.sh(f"echo {base64.b64encode(blob).decode()} | base64 -d > /bin/probe && chmod 755 /bin/probe")
    if res.exit_code != 0:
        raise AssertionError(f"could not install the prober: {res.output}")

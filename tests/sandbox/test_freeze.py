"""Checkpoints read the container layer with the sandbox frozen (sandbox/freeze.py): a
process changing it all the time never gives a torn layer, the sandbox is never left
frozen (an error, the freezing process SIGKILLed), and execs wait for the thaw."""
from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
import tarfile
import threading
import time

import pytest

from tests.conftest import IS_ROOT, ROOT, wait_for

pytestmark = [pytest.mark.root, pytest.mark.sandbox, pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
              pytest.mark.django_db(transaction=True)]

# Moves one file between two directories without end; a big file between them in the
# walk's (sorted) order makes the two directories be read tens of milliseconds apart.
# rename(2) is atomic: at every instant the file is in exactly one of them.
WRITER = ("mkdir -p /opt/a /opt/m /opt/z && head -c 8m /dev/urandom > /opt/m/big && echo 1 > /opt/a/f || exit 1\n"
          "setsid sh -c 'while :; do mv /opt/a/f /opt/z/f; mv /opt/z/f /opt/a/f; done' >/dev/null 2>&1 </dev/null &")


def _copies(sandbox) -> int:
    """Checkpoint the sandbox's container layer; how many copies of the moving file it holds."""
    from sandbox.images.store import ImageStore
    from sandbox.inside.checkpoint import upper_commit

    cfg = sandbox.cfg
    ref = f"lab-checkpoints/{sandbox.sid}:{secrets.token_hex(4)}"
    image, _ = upper_commit(cfg, sandbox.layout, ref=ref, created_by="lab checkpoint test")
    store = ImageStore(cfg.images_dir, uid_base=cfg.uid_base, id_count=cfg.id_count)
    try:
        with tarfile.open(store.blob_path(image.layers[-1].digest)) as tar:
            names = {m.name for m in tar}
    finally:
        store.remove(ref)
    return len(names & {"opt/a/f", "opt/z/f"})


def test_a_file_moved_back_and_forth_is_in_every_checkpoint_exactly_once(escape_sandbox, monkeypatch):
    from sandbox.freeze import is_frozen

    assert escape_sandbox.sh(WRITER).exit_code == 0
    frozen_counts = [_copies(escape_sandbox) for _ in range(8)]
    assert frozen_counts == [1] * 8
    assert not is_frozen(escape_sandbox.cfg, escape_sandbox.sid)
    # The same checkpoints read live, as before the freeze: the control that shows the
    # test can fail (each has about even odds of catching the file in both or neither).
    import sandbox.inside.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "frozen", lambda cfg, sid: contextlib.nullcontext(0.0))
    torn = next((n for _ in range(40) if (n := _copies(escape_sandbox)) != 1), None)
    assert torn in (0, 2)
    # The writer still runs: nothing was left frozen.
    assert not is_frozen(escape_sandbox.cfg, escape_sandbox.sid)
    assert int(escape_sandbox.sh("ps | grep -c '[w]hile :'").output.strip()) >= 1


def test_a_sandbox_is_thawed_after_an_error_in_the_frozen_block(escape_sandbox):
    from sandbox.freeze import frozen, is_frozen

    cfg, sid = escape_sandbox.cfg, escape_sandbox.sid
    with pytest.raises(RuntimeError):
        with frozen(cfg, sid):
            assert is_frozen(cfg, sid)
            raise RuntimeError("the read failed")
    assert not is_frozen(cfg, sid)
    assert escape_sandbox.sh("echo thawed").output.strip() == "thawed"


def test_a_sandbox_is_thawed_when_the_process_that_froze_it_is_sigkilled(escape_sandbox):
    from sandbox.freeze import is_frozen

    cfg, sid = escape_sandbox.cfg, escape_sandbox.sid
    code = ("import sys, time; from pathlib import Path; from sandbox.config import HostConfig; "
            "from sandbox.freeze import frozen; cfg = HostConfig(data_dir=Path(sys.argv[1]), host=sys.argv[2], redis_url=''); "
            "cm = frozen(cfg, sys.argv[3]); cm.__enter__(); print('frozen', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(cfg.data_dir), cfg.host, sid], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "frozen"
        assert is_frozen(cfg, sid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_for(lambda: not is_frozen(cfg, sid), timeout=5, what="the guard thaws the sandbox")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert escape_sandbox.sh("echo thawed").output.strip() == "thawed"


def test_an_exec_started_while_frozen_waits_for_the_thaw_instead_of_failing(escape_sandbox):
    from sandbox.freeze import frozen, is_frozen

    cfg, sid = escape_sandbox.cfg, escape_sandbox.sid
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with frozen(cfg, sid):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10) and is_frozen(cfg, sid)
        result: list = []
        execs = threading.Thread(target=lambda: result.append(escape_sandbox.sh("echo ran")))
        execs.start()
        time.sleep(0.3)  # let the exec reach the lock (its outcome is asserted below, not this)
        assert not result  # not run, and not failed, while frozen
        release.set()
        execs.join(30)
        assert [(r.exit_code, r.output.strip()) for r in result] == [(0, "ran")]
    finally:
        release.set()
        thread.join()
    assert not is_frozen(cfg, sid)

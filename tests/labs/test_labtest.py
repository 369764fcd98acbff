"""`manage.py labs test` proves labs in real sandboxes; CI runs it on every built-in lab."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import IS_ROOT, ROOT, _subprocess_env

pytestmark = [pytest.mark.root, pytest.mark.sandbox, pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
              pytest.mark.django_db(transaction=True)]


def labs_test(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", "labs", "test", *args], cwd=ROOT, env=_subprocess_env(),
                          capture_output=True, text=True, timeout=900)


def test_every_built_in_lab_passes_labs_test(base_image, django_db_setup):
    proc = labs_test("--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 failed" in proc.stdout
    assert "PASS" in proc.stdout and "FAIL" not in proc.stdout


def test_a_check_that_hangs_fails_labs_test_with_a_clear_row(base_image, django_db_setup):
    proc = labs_test(str(ROOT / "tests" / "fixtures" / "labs" / "smoke"))
    assert proc.returncode == 1
    assert "PASS  smoke" in proc.stdout and "make-file" in proc.stdout
    assert "FAIL  smoke" in proc.stdout and "did not finish within 2 s" in proc.stdout

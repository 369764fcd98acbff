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


def test_wrong_answers_run_in_a_fresh_sandbox_at_their_step_and_a_lenient_check_fails(base_image, django_db_setup):
    proc = labs_test(str(ROOT / "tests" / "fixtures" / "labs" / "lenient"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = {" ".join(line.split()[2:4]) if "✗" in line else line.split()[2]: line for line in proc.stdout.splitlines() if line.startswith(("PASS", "FAIL"))}
    # The strict step's setup needs the first step's solution: the fresh sandbox was brought to the step.
    assert rows["strict"].startswith("PASS") and "refused: no /root/file with content" in rows["strict ✗1"]
    assert rows["strict ✗1"].startswith("PASS")
    assert rows["too-lenient"].startswith("PASS")
    assert rows["too-lenient ✗1"].startswith("FAIL") and "the check PASSED a wrong answer (A directory is not a file.)" in rows["too-lenient ✗1"]
    assert "4 passed, 1 failed" in proc.stdout

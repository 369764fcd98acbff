"""`manage.py labs test` proves labs in real sandboxes; CI runs it on every built-in lab."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

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


def _no_private_redis_left() -> list[str]:
    """redis-servers that `labs test` started in its data directory and left running."""
    from pathlib import Path

    left = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and ".labtest-redis-" in os.readlink(entry / "cwd"):
                left.append((entry / "cmdline").read_bytes().decode(errors="replace"))
        except OSError:
            continue
    return left


def test_labs_test_starts_its_own_redis_when_none_answers(base_image, django_db_setup):
    from tests.support import free_port

    env = dict(_subprocess_env(), REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    proc = subprocess.run([sys.executable, "manage.py", "labs", "test", str(ROOT / "tests" / "fixtures" / "labs" / "setup-steps")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "does not answer: starting a private one" in out
    assert "PASS  setup-steps" in out and "Error 111" not in out
    assert not _no_private_redis_left()
    assert not list(Path(settings.LAB_DATA_DIR).glob(".labtest-redis-*"))


def test_labs_test_beside_a_running_lab_uses_its_redis_and_takes_no_trainee(worker, make_user, client):
    """The running lab (this run's worker and Redis) goes on serving trainees while an
    author tests a lab: the test relay beats in the same Redis but is never chosen."""
    import redis

    from labs.labfile import load_lab
    from labs.services import lab_import
    from tests.conftest import wait_for

    lab_import(spec=load_lab(ROOT / "tests" / "fixtures" / "labs" / "smoke"))
    r = redis.Redis.from_url(settings.REDIS_URL)
    test = subprocess.Popen([sys.executable, "manage.py", "labs", "test", "smoke"], cwd=ROOT, env=_subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        host = f"labtest{test.pid}"
        wait_for(lambda: r.get(f"lab:host:{host}") or test.poll() is not None, timeout=60, what="the test relay's heartbeat")
        assert r.get(f"lab:host:{host}"), "labs test did not use the running Redis"
        client.force_login(make_user())
        for _ in range(3):  # the test relay looks emptier than the worker; it must still not be chosen
            resp = client.post("/api/sessions/", {"lab": "smoke"}, content_type="application/json")
            assert resp.status_code in (200, 201) and resp.json()["host"] == worker.host, resp.content
        out, _ = test.communicate(timeout=300)
    finally:
        if test.poll() is None:
            test.kill()
            test.wait()
    assert test.returncode == 1, out  # the smoke lab's hanging check fails, by design
    assert "PASS  smoke" in out and "does not answer" not in out
    assert not r.exists(f"lab:host:{host}") and not r.exists(f"host.{host}")


def test_labs_test_finds_an_uploaded_lab_by_slug(base_image, django_db_setup, tmp_path):
    import io
    import shutil
    import tarfile

    from labs.models import Lab
    from labs.uploads import lab_upload

    src = tmp_path / "uploaded-steps"
    shutil.copytree(ROOT / "tests" / "fixtures" / "labs" / "setup-steps", src)
    (src / "lab.yaml").write_text((src / "lab.yaml").read_text().replace("slug: setup-steps", "slug: uploaded-steps"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src, arcname="uploaded-steps")
    from django.contrib.auth import get_user_model

    author = get_user_model().objects.create_superuser("uploader", "uploader@example.org", "pw-for-tests-123")
    lab_upload(user=author, upload=io.BytesIO(buf.getvalue()), name="uploaded-steps.tar.gz", size=len(buf.getvalue()))
    lab = Lab.objects.get(slug="uploaded-steps", draft_of__isnull=True)
    assert Path(lab.source).is_relative_to(Path(settings.LAB_DATA_DIR) / "labs")

    by_slug = labs_test("uploaded-steps")
    assert by_slug.returncode == 0, by_slug.stdout + by_slug.stderr
    assert "PASS  uploaded-steps" in by_slug.stdout and "first" in by_slug.stdout

    unknown = labs_test("no-such-lab")
    assert unknown.returncode == 1
    assert "no lab 'no-such-lab'" in unknown.stderr


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

"""`labs import`: idempotent, in course order, and a changed lab keeps progress by step id."""
from __future__ import annotations

import shutil

import pytest
from django.core.management import call_command

from tests.conftest import ROOT

pytestmark = [pytest.mark.django_db]


def test_importing_twice_changes_nothing_the_second_time(capsys):
    call_command("labs", "import", str(ROOT / "labs" / "builtin"))
    first = capsys.readouterr().out
    call_command("labs", "import", str(ROOT / "labs" / "builtin"))
    second = capsys.readouterr().out
    assert "imported: first-container" in first
    assert "imported" not in second and "unchanged: first-container" in second


def test_the_catalogue_follows_prerequisites():
    from labs.models import Lab

    call_command("labs", "import", str(ROOT / "labs" / "builtin"))
    order = list(Lab.objects.values_list("slug", flat=True))
    for lab in Lab.objects.all():
        from labs.labfile import load_lab

        for prerequisite in load_lab(ROOT / "labs" / "builtin" / lab.slug).prerequisites:
            assert order.index(prerequisite) < order.index(lab.slug), (prerequisite, lab.slug)


def test_a_changed_lab_keeps_progress_by_step_id_and_retires_removed_steps(tmp_path, django_user_model):
    from labs.labfile import load_lab
    from labs.models import Step, StepProgress
    from labs.services import lab_import

    lab_dir = tmp_path / "smoke"
    shutil.copytree(ROOT / "tests" / "fixtures" / "labs" / "smoke", lab_dir)
    lab, _ = lab_import(spec=load_lab(lab_dir))
    user = django_user_model.objects.create_user("t", password="pw-for-tests-123")
    step = Step.objects.get(lab=lab, key="make-file")
    StepProgress.objects.create(user=user, step=step, attempts=3)
    # the instructor reorders: the hanging step goes, make-file gets a new title
    text = (lab_dir / "lab.yaml").read_text()
    text = text.replace("title: {zh-hans: 建一个文件, en: Make a file}", "title: {zh-hans: 新建文件, en: Create a file}")
    text = text[: text.index("  - id: hangs")]
    (lab_dir / "lab.yaml").write_text(text)
    again, changed = lab_import(spec=load_lab(lab_dir))
    assert changed and again.pk == lab.pk
    step.refresh_from_db()
    assert step.title["en"] == "Create a file" and not step.retired
    assert StepProgress.objects.get(user=user, step=step).attempts == 3
    assert Step.objects.get(lab=lab, key="hangs").retired

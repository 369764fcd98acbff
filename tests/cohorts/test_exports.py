"""The .xlsx download beside the CSV: Excel reads Chinese names and step titles as they
are, numbers as numbers; the same rule as the CSV decides who gets which rows."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from openpyxl import load_workbook

from tests.cohorts.conftest import make_instructor, signed_in
from tests.cohorts.test_api import _progress

pytestmark = pytest.mark.django_db(transaction=True)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _sheet(resp):
    assert resp.status_code == 200, resp.content[:300]
    assert resp["Content-Type"] == XLSX
    assert resp["Content-Disposition"].endswith('progress.xlsx"')
    book = load_workbook(io.BytesIO(resp.content))
    assert len(book.worksheets) == 1
    return book.worksheets[0]


def _rows(sheet) -> list[dict]:
    values = list(sheet.iter_rows(values_only=True))
    return [dict(zip(values[0], row)) for row in values[1:]]


def test_the_xlsx_export_has_chinese_names_and_step_titles_and_numbers_as_numbers(klass, smoke_lab):
    klass.trainee.first_name, klass.trainee.last_name = "小红", "王"
    klass.trainee.save()
    _progress(klass.trainee, smoke_lab.steps.get(key="make-file"), attempts=3, hints=2, started_ago=timedelta(minutes=3))
    klass.cohort.name = "容器基础:第 1/2 周"  # ":" and "/" are not allowed in a sheet name
    klass.cohort.save()
    sheet = _sheet(klass.teacher_client.get(f"/cohorts/{klass.cohort.id}/progress.xlsx"))
    assert sheet.title == "容器基础_第 1_2 周"
    assert sheet.freeze_panes == "A2"  # the header row stays in view
    assert [c.value for c in sheet[1]] == ["username", "name", "lab", "step", "step_title", "state", "attempts",
                                           "hints", "solution_used", "seconds"]
    assert sheet["B2"].value == "王小红"  # family name first, as Chinese writes it
    assert sheet["E2"].value == "建一个文件" and sheet["E3"].value == "永不结束的检查"
    rows = _rows(sheet)
    assert [(r["username"], r["step"], r["state"], r["attempts"], r["hints"], r["solution_used"]) for r in rows] == [
        ("ada", "make-file", "working", 3, 2, False), ("ada", "hangs", "not_started", 0, 0, False)]
    assert isinstance(rows[0]["seconds"], int) and 170 <= rows[0]["seconds"] <= 190
    csv_rows = klass.teacher_client.get(f"/cohorts/{klass.cohort.id}/progress.csv").content.decode("utf-8-sig").splitlines()
    assert len(csv_rows) == sheet.max_row  # the same rows as the CSV


def test_the_xlsx_export_follows_the_csvs_rule_trainees_get_only_their_own_rows(klass, make_user, smoke_lab):
    from django.contrib.auth import get_user_model

    from cohorts.services import cohort_join

    bob = make_user("bob")
    cohort_join(user=bob, code=klass.cohort.invite_code)
    url = f"/cohorts/{klass.cohort.id}/progress.xlsx"
    assert {r["username"] for r in _rows(_sheet(klass.teacher_client.get(url)))} == {"ada", "bob"}
    assert {r["username"] for r in _rows(_sheet(klass.trainee_client.get(url)))} == {"ada"}
    admin = signed_in(get_user_model().objects.create_superuser("admin", "a@example.org", "x"))
    assert {r["username"] for r in _rows(_sheet(admin.get(url)))} == {"ada", "bob"}
    for outsider in (signed_in(make_instructor("other-teacher")), signed_in(make_user("stranger"))):
        resp = outsider.get(url)
        assert resp.status_code == 403 and b"PK" not in resp.content[:2]
    assert signed_in(make_user("nobody")).get("/cohorts/999999/progress.xlsx").status_code == 404
    from django.test import Client

    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


def test_the_dashboard_links_the_xlsx_beside_the_csv(klass):
    page = klass.teacher_client.get(f"/cohorts/{klass.cohort.id}/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert f'href="/cohorts/{klass.cohort.id}/progress.xlsx" data-testid="xlsx-link">下载 Excel</a>' in page
    page = klass.teacher_client.get(f"/cohorts/{klass.cohort.id}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'data-testid="xlsx-link">Download Excel</a>' in page

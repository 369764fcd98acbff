"""Issue 16 walked through as a person would, in a real browser (Debian's chromium): a
non-staff instructor and an admin, at 1440 px and at 390 px, in Chinese and in English,
on every page the issue touches (dashboard of a class of 30 on three built-in labs,
cohort list, my labs, upload, versions, editor, watch; for the admin also the sandbox
overview and the Django admin). No page scrolls sideways; the dashboard's matrix fits a
laptop screen; the overview shows names, minutes and MiB with Stop/Extend; the Django
admin is branded, translated, has no "Add session" and no "progresss"."""
from __future__ import annotations

import random
from datetime import timedelta

import pytest

from tests.e2e.conftest import PASSWORD, log_in, needs_chromium
from tests.e2e.test_small_screens import OVERFLOW_JS
from tests.e2e.test_trainee_terminal import DESKTOP, PHONE, open_browser, shot  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.django_db(transaction=True)]
LABS = ["first-container", "overlayfs-hands-on", "what-is-a-container"]
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧"


@pytest.fixture
def school(builtin_labs, make_user):
    """An instructor (not staff) with a cohort of 30 trainees with Chinese names on three
    labs, progress spread over the steps (one stuck), one live sandbox; and an admin."""
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from cohorts.models import Membership
    from cohorts.services import cohort_create
    from labs.models import Lab, Session, StepProgress
    from labs.selectors import display_name

    teacher = make_user("laoshi", PASSWORD)
    teacher.first_name, teacher.last_name = "老师", "王"
    teacher.save()
    teacher.groups.add(Group.objects.get_or_create(name="instructors")[0])
    admin = make_user("root-admin", PASSWORD)
    admin.is_staff = admin.is_superuser = True
    admin.first_name = "管理员"
    admin.save()
    cohort = cohort_create(owner=teacher, name="容器镜像 第一期 Container images, cohort 1", lab_slugs=LABS)
    rng, now, trainees = random.Random(16), timezone.now(), []
    for i in range(30):
        user = make_user(f"student{i:02d}", PASSWORD)
        user.first_name, user.last_name = "同学" + "一二三四五六七八九十"[i % 10], SURNAMES[i]
        user.save()
        trainees.append(user)
    Membership.objects.bulk_create([Membership(cohort=cohort, user=u) for u in trainees])
    for lab in Lab.objects.filter(slug__in=LABS):
        steps = list(lab.steps.order_by("position"))
        for user in trainees:
            reached = rng.randrange(len(steps) + 1)
            for k, step in enumerate(steps[:reached + 1][:len(steps)]):
                p = StepProgress.objects.create(user=user, step=step, attempts=rng.randrange(1, 6), hints_used=rng.randrange(3),
                                                passed_at=now if k < reached else None, passed_by="check" if k < reached else "")
                StepProgress.objects.filter(pk=p.pk).update(started_at=now - timedelta(minutes=rng.randrange(5, 40)))
    first = Lab.objects.get(slug="first-container")
    live = Session.objects.create(user=trainees[3], lab=first, host="h1", state="ready",
                                  expires_at=now + timedelta(minutes=25))
    Session.objects.filter(pk=live.pk).update(ready_at=now - timedelta(minutes=20))
    return {"cohort": cohort.id, "sid": live.id, "trainee": display_name(trainees[3])}


def _pages(school: dict, admin: bool) -> dict[str, str]:
    cid = school["cohort"]
    pages = {"cohorts": "/cohorts/", "dashboard": f"/cohorts/{cid}/", "authoring": "/authoring/",
             "upload": "/labs/upload/", "versions": "/labs/first-container/versions/",
             "watch": f"/cohorts/{cid}/watch/{school['sid']}/"}
    if admin:
        pages.update({"edit": "/labs/first-container/edit/", "ops": "/ops/sandboxes/", "admin": "/admin/",
                      "admin-sessions": "/admin/labs/session/"})
    return pages


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1440", "390"])
@pytest.mark.parametrize("role", ["instructor", "admin"])
def test_issue_16_pages_read_well_for_an_instructor_and_an_admin(web, school, open_browser, role, viewport, locale):
    page = open_browser(viewport, 1, locale)
    lang = "zh" if locale.startswith("zh") else "en"
    width = viewport["width"]
    log_in(page, web, ("root-admin" if role == "admin" else "laoshi", PASSWORD), "/cohorts/")
    problems = {}
    for name, path in _pages(school, role == "admin").items():
        resp = page.goto(web + path)
        assert resp.status in (200, 404) if name == "versions" and role == "instructor" else resp.status == 200, (name, resp.status)
        page.wait_for_load_state("networkidle")
        if name == "edit":  # an untouched built-in lab has no problems (none uploaded yet on this server)
            page.wait_for_function("() => window.__editorReady === true")
            page.wait_for_function("() => document.querySelector('[data-testid=editor-status]').dataset.problems === 'false'")
        found = page.evaluate(OVERFLOW_JS)
        if found["scrollWidth"] > found["width"] or found["wide"]:
            problems[name] = found
        shot(page, f"walk-{role}-{lang}-{width}-{name}", full_page=True)
        if name == "dashboard":
            page.wait_for_selector("[data-testid^=matrix-]")
            badge = page.locator(".sandbox-cell .tag").first.inner_text()
            assert badge == ("就绪" if lang == "zh" else "Ready"), badge
            assert page.locator("[data-testid^=matrix-] tbody tr").count() == 30 * len(LABS)
            if width >= 1440:  # a laptop: the matrix itself does not scroll sideways either
                wide = page.evaluate("[...document.querySelectorAll('.dash-section')]"
                                     ".filter(s => s.scrollWidth > s.clientWidth).map(s => s.id || s.className)")
                if wide:
                    problems["dashboard-matrix"] = wide
        if name == "watch":
            state = page.get_by_test_id("watch-state").inner_text()
            assert state.split(" · ")[0] in (("就绪", "启动中", "停止中", "已停止", "失败", "已断开") if lang == "zh" else
                                             ("Ready", "Starting", "Stopping", "Stopped", "Failed", "Lost")), state
        if name == "ops":
            text = page.locator("main").inner_text()
            assert "<script" not in page.title() and page.locator("main").get_attribute("class") == "site-main site-main-wide"
            assert page.get_by_test_id("per-user").locator("strong").first.inner_text() == school["trainee"]
            assert school["trainee"] in text and ("MiB" in text) and ("分钟" in text if lang == "zh" else "min" in text), text[:800]
            assert page.get_by_role("button", name="延长" if lang == "zh" else "Extend").count() >= 1
            assert page.get_by_role("button", name="停止" if lang == "zh" else "Stop").count() >= 1
            assert school["sid"] not in text  # names, not session ids
            assert ("就绪" in text and "ready" not in text) if lang == "zh" else "Ready" in text
        if name == "admin":
            title = page.title()
            assert "Container Image Lab" in title or "容器镜像实验室" in title, title
            body = page.locator("body").inner_text()
            assert "progresss" not in body.lower()
            assert ("实验、会话与班级" if lang == "zh" else "Labs, sessions and cohorts") in body  # branded, not "Django"
            assert "Django" not in body and "Django" not in title
        if name == "admin-sessions":
            assert page.get_by_role("link", name="Add session").count() == 0
            assert page.locator("a[href$='/admin/labs/session/add/']").count() == 0  # nor in the sidebar
    assert not problems, problems

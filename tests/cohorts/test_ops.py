"""The admins' operations page and the Django admin: stop and extend from the overview,
human units, user names, the per-user sandbox limit, a header link for staff; the admin
branded and translated, without the "Step progresss" typo or an "Add session" button."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from tests.cohorts.conftest import signed_in

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def admin_client(transactional_db):
    return signed_in(get_user_model().objects.create_user("ops", password="x", is_staff=True, first_name="Olga"))


@pytest.fixture
def live(klass, smoke_lab):
    """A ready sandbox of the trainee (ada, "Ada Lovelace"), started 90 minutes ago."""
    from labs.models import Session

    klass.trainee.first_name, klass.trainee.last_name = "Ada", "Lovelace"
    klass.trainee.save()
    now = timezone.now()
    session = Session.objects.create(user=klass.trainee, lab=smoke_lab, host="h1", state="ready",
                                     expires_at=now + timedelta(minutes=10))
    Session.objects.filter(pk=session.pk).update(created_at=now - timedelta(minutes=90), ready_at=now - timedelta(minutes=90))
    session.refresh_from_db()
    return session


def test_the_overview_shows_names_human_units_the_per_user_limit_and_stop_extend(admin_client, klass, live):
    page = admin_client.get("/ops/sandboxes/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    row = page[page.index(f'data-testid="sandbox-{live.id}"'):]
    row = row[:row.index("</tr>")]
    assert "Ada Lovelace" in row and f">{live.id}<" not in row  # a name, not a session id
    assert 'data-testid="uptime-' in row and "1 h 30 min" in row
    assert f'data-testid="ops-stop-{live.id}"' in row and f'data-testid="ops-extend-{live.id}"' in row
    assert 'data-testid="user-limit"' in page and "at most 3 sandboxes" in page
    assert 'data-testid="user-ada"' in page
    data = admin_client.get("/api/ops/sandboxes").json()
    assert data["user_limit"] == 3 and data["users"] == [{"user": "ada", "name": "Ada Lovelace", "live": 1, "at_limit": False}]


def test_admins_extend_and_stop_any_sandbox_and_the_trainee_is_told_who(admin_client, klass, live):
    from labs.models import Session

    before = live.expires_at
    assert admin_client.post(f"/api/ops/sandboxes/{live.id}/extend").status_code == 200
    assert Session.objects.get(pk=live.pk).expires_at > before
    assert admin_client.post(f"/ops/sandboxes/{live.id}/stop").status_code == 302
    stopped = Session.objects.get(pk=live.pk)
    assert stopped.state == "stopping" and "The administrator Olga stopped your sandbox" in stopped.message
    assert "管理员 Olga" in stopped.message


def test_nobody_but_admins_may_act_from_the_overview(klass, live):
    for client in (klass.teacher_client, klass.trainee_client):
        assert client.post(f"/api/ops/sandboxes/{live.id}/stop").status_code == 403
        assert client.post(f"/api/ops/sandboxes/{live.id}/extend").status_code == 403
        assert client.post(f"/ops/sandboxes/{live.id}/stop").status_code == 403
    from labs.models import Session

    assert Session.objects.get(pk=live.pk).state == "ready"


def test_the_header_links_the_overview_for_staff_only(admin_client, klass):
    assert 'data-testid="nav-ops"' in admin_client.get("/").content.decode()
    assert 'data-testid="nav-ops"' not in klass.teacher_client.get("/").content.decode()


def test_the_django_admin_is_branded_translated_without_the_typo_or_add_session(admin_client):
    from django.contrib.auth.models import User

    User.objects.filter(username="ops").update(is_superuser=True)
    index = admin_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "容器镜像实验室 · 管理" in index and "步骤进度" in index and "progresss" not in index.lower()
    english = admin_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Container Image Lab · administration" in english and "Step progress<" in english
    sessions = admin_client.get("/admin/labs/session/").content.decode()
    assert "/admin/labs/session/add/" not in sessions
    assert admin_client.get("/admin/labs/session/add/").status_code == 403

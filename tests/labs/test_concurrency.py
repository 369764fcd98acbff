"""Two requests at the same moment behave as one: a double click on Start (or two tabs)
gives one sandbox, on SQLite and on PostgreSQL alike (CI runs this file on both)."""
from __future__ import annotations

import os
import threading

import pytest
from django.db import connection
from django.test import Client

from tests.conftest import IS_ROOT, ROOT

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]


def test_the_run_uses_the_database_it_was_asked_for():
    assert connection.vendor == os.environ.get("LAB_TEST_DATABASE", "sqlite")


def _at_once(calls: list) -> list:
    """Run the calls in threads released together; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        from django.db import connections

        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # reported by the assertion below, not lost in the thread
            results[i] = exc
        finally:
            connections.close_all()  # each thread had its own connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_starts_of_the_same_lab_at_once_make_one_session(worker, make_user):
    from labs.labfile import load_lab
    from labs.models import Session
    from labs.services import lab_import

    lab = lab_import(spec=load_lab(ROOT / "tests" / "fixtures" / "labs" / "smoke"))[0]
    users = [make_user(f"double{i}") for i in range(4)]
    clients = []
    for user in users:
        for _ in range(2):  # two tabs (two clients) of the same user
            c = Client()
            c.force_login(user)
            clients.append(c)

    responses = _at_once([lambda c=c: c.post("/api/sessions/", {"lab": "smoke"}, content_type="application/json")
                          for c in clients])
    for r in responses:
        assert not isinstance(r, BaseException), repr(r)
        assert r.status_code in (200, 201), r.content
    for i, user in enumerate(users):
        pair = responses[2 * i:2 * i + 2]
        assert sorted(r.status_code for r in pair) == [200, 201], [r.content for r in pair]
        assert pair[0].json()["id"] == pair[1].json()["id"]
        assert Session.objects.filter(user=user, lab=lab, state__in=Session.LIVE_STATES).count() == 1


def test_starts_of_different_labs_at_once_never_pass_the_per_user_limit(worker, make_user, settings):
    from labs.labfile import load_lab
    from labs.models import Session
    from labs.services import lab_import

    spec = load_lab(ROOT / "tests" / "fixtures" / "labs" / "smoke")
    slugs = []
    for i in range(4):
        from dataclasses import replace

        slugs.append(lab_import(spec=replace(spec, slug=f"smoke-{i}"))[0].slug)
    settings.LAB_USER_SESSION_LIMIT = 2
    user = make_user("greedy")
    clients = []
    for _ in slugs:
        c = Client()
        c.force_login(user)
        clients.append(c)

    responses = _at_once([lambda c=c, s=s: c.post("/api/sessions/", {"lab": s}, content_type="application/json")
                          for c, s in zip(clients, slugs)])
    codes = sorted(r.status_code for r in responses if not isinstance(r, BaseException))
    assert codes == [201, 201, 409, 409], [getattr(r, "content", r) for r in responses]
    assert Session.objects.filter(user=user, state__in=Session.LIVE_STATES).count() == 2

"""Authoring in the browser: instructors upload, own, preview (with a real sandbox), test,
version and publish their labs. Every page, API call and WebSocket is tried as the author
(an instructor who is not staff), another instructor, a trainee and an admin."""
from __future__ import annotations

import io
import json
import tarfile

import pytest
from django.test import Client

from tests.conftest import IS_ROOT, wait_for
from tests.support import ws_messages

pytestmark = [pytest.mark.django_db(transaction=True)]
PASSWORD = "pw-for-tests-123"


def lab_yaml(slug: str = "mine", *, title: str = "My lab", check: str = "test -f /root/x", extra_step: bool = False) -> str:
    step2 = """
  - id: second
    title: {zh-hans: 第二步, en: Second step}
    text: Touch y.
    check: test -f /root/y
    solution: touch /root/y
""" if extra_step else ""
    return f"""slug: {slug}
title: {{zh-hans: 我的实验, en: {title}}}
summary: A lab for the tests.
level: beginner
minutes: 5
image: lab/base:latest
limits: {{memory_mb: 128, pids: 64, disk_mb: 32}}
steps:
  - id: first
    title: {{zh-hans: 第一步, en: First step}}
    text: Touch x.
    check: {check}
    solution: touch /root/x
{step2}"""


def archive(text: str, root: str = "lab/", extra: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in {"lab.yaml": text, **(extra or {})}.items():
            data = content.encode()
            info = tarfile.TarInfo(root + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def upload(client: Client, text: str, *, api: bool = False):
    from django.core.files.uploadedfile import SimpleUploadedFile

    url = "/api/authoring/upload" if api else "/labs/upload/"
    return upload_finish(client, client.post(url, {"archive": SimpleUploadedFile("lab.tar.gz", archive(text))}))


def upload_finish(client: Client, resp):
    """Run the import an upload queued, as the worker's task does (in this process: these
    tests have no worker; tests/labs/test_upload_import.py runs it on a real one), and
    read its outcome: the page (302 to the preview, or 400 with the errors) or the API's JSON."""
    from labs.models import LabUpload
    from labs.tasks import lab_upload_import
    from tests.conftest import wait_for

    def run(upload_id: str) -> None:
        lab_upload_import(upload_id)  # "taken" if a worker of this run has it: wait for that one
        wait_for(lambda: LabUpload.objects.get(id=upload_id).state in ("done", "failed"), timeout=60,
                 what="the upload's import")

    if resp.status_code == 302 and resp["Location"].startswith("/labs/upload/"):
        run(resp["Location"].split("/")[3])
        return client.get(resp["Location"])
    if resp.status_code == 202:
        run(resp.json()["upload"])
        return client.get(resp.json()["url"])
    return resp


class People:
    """The author (instructor, not staff), another instructor, a trainee and an admin, signed in."""

    def __init__(self, make_user) -> None:
        from django.contrib.auth.models import Group

        group = Group.objects.get_or_create(name="instructors")[0]
        self.author, self.other, self.trainee, self.admin = (make_user(n) for n in ("author", "other", "trainee", "admin"))
        for user in (self.author, self.other):
            user.groups.add(group)
        self.admin.is_staff = True
        self.admin.save()
        self.clients = {}
        for name in ("author", "other", "trainee", "admin"):
            client = Client()
            client.force_login(getattr(self, name))
            self.clients[name] = client

    def __getitem__(self, name: str) -> Client:
        return self.clients[name]


@pytest.fixture
def people(make_user) -> People:
    return People(make_user)


# ---- 1. Instructors upload, own and edit their labs --------------------------------------------

def test_an_instructor_who_is_not_staff_uploads_a_lab_and_owns_it(people):
    from labs.models import Lab

    assert not people.author.is_staff
    assert people["author"].get("/labs/upload/").status_code == 200
    resp = upload(people["author"], lab_yaml())
    assert resp.status_code == 302 and resp["Location"] == "/labs/mine/preview/"
    lab = Lab.objects.get(slug="mine")
    assert lab.owner == people.author and lab.published is False
    assert lab.versions.get().number == 1 and lab.versions.get().created_by == people.author
    assert people["author"].get("/labs/mine/preview/").status_code == 200
    assert people["author"].get("/labs/mine/").status_code == 200
    listing = people["author"].get("/authoring/").content.decode()
    assert 'data-testid="my-lab-mine"' in listing
    assert [lab["slug"] for lab in people["author"].get("/api/authoring/labs").json()] == ["mine"]


def test_other_instructors_and_trainees_see_an_unpublished_lab_nowhere_admins_see_it_everywhere(people):
    upload(people["author"], lab_yaml())
    urls = ["/labs/mine/", "/labs/mine/preview/", "/labs/mine/versions/", "/labs/mine/versions/1/",
            "/api/labs/mine/", "/api/labs/mine/versions", "/api/labs/mine/versions/1", "/api/labs/mine/progress"]
    for name in ("other", "trainee"):
        for url in urls:
            assert people[name].get(url).status_code == 404, (name, url)
        assert "mine" not in people[name].get("/").content.decode()
        assert people[name].get("/api/labs/").json() == []
        assert people[name].post("/api/sessions/", {"lab": "mine"}, content_type="application/json").status_code == 404
        assert people[name].post("/labs/mine/publish").status_code == 404
        assert people[name].post("/api/labs/mine/versions/1/publish", "{}", content_type="application/json").status_code == 404
        assert people[name].post("/api/labs/mine/versions/1/test", "{}", content_type="application/json").status_code == 404
    assert people["other"].get("/api/authoring/labs").json() == []
    assert people["trainee"].get("/labs/upload/").status_code == 404
    assert people["trainee"].get("/authoring/").status_code == 404
    assert people["trainee"].get("/api/authoring/labs").status_code == 404
    assert upload(people["trainee"], lab_yaml("theirs"), api=True).status_code == 404
    for url in urls:
        assert people["admin"].get(url).status_code == 200, url
    assert "mine" in [lab["slug"] for lab in people["admin"].get("/api/authoring/labs").json()]
    assert Client().get("/api/labs/mine/versions").status_code == 401


def test_once_published_every_signed_in_user_sees_the_lab(people):
    upload(people["author"], lab_yaml())
    assert people["author"].post("/labs/mine/publish").status_code == 302
    for name in ("other", "trainee", "admin"):
        assert people[name].get("/labs/mine/").status_code == 200
        assert "mine" in [lab["slug"] for lab in people[name].get("/api/labs/").json()]
    # Publishing does not hand the lab over: its versions stay the author's (and admins').
    assert people["other"].get("/labs/mine/versions/").status_code == 404
    assert people["other"].get("/labs/mine/preview/").status_code == 404


def test_an_instructor_cannot_take_over_another_authors_slug_nor_a_built_in_lab(people):
    from labs.labfile import load_lab
    from labs.services import lab_import
    from tests.conftest import ROOT

    upload(people["author"], lab_yaml())
    resp = upload(people["other"], lab_yaml(title="Hijacked"))
    assert resp.status_code == 400 and "another author" in resp.content.decode()
    api = upload(people["other"], lab_yaml(title="Hijacked"), api=True)
    assert api.json()["state"] == "failed" and "another author" in " ".join(api.json()["errors"])
    lab_import(spec=load_lab(ROOT / "tests" / "fixtures" / "labs" / "smoke"))  # no owner: built in
    smoke = lab_yaml("smoke")
    assert upload(people["author"], smoke).status_code == 400
    assert upload(people["admin"], smoke).status_code == 302  # admins edit every lab


def test_the_author_edits_by_uploading_again_and_the_api_answers_json(people):
    first = upload(people["author"], lab_yaml(), api=True).json()
    assert (first["state"], first["created"], first["number"], first["lab"]) == ("done", True, 1, "mine")
    same = upload(people["author"], lab_yaml(), api=True).json()
    assert same["created"] is False and same["number"] == 1  # the same files: no new version
    second = upload(people["author"], lab_yaml(title="My fixed lab"), api=True).json()
    assert second["created"] is True and second["number"] == 2
    assert people["author"].get("/api/labs/mine/", HTTP_ACCEPT_LANGUAGE="en").json()["title"] == "My fixed lab"  # unpublished: edited in place
    history = people["author"].get("/api/labs/mine/versions").json()
    assert [v["number"] for v in history["versions"]] == [2, 1] and history["owner"] == "author"
    assert all(v["created_by"] == "author" for v in history["versions"])
    broken = upload(people["author"], lab_yaml().replace("level: beginner", "level: expert"), api=True)
    assert broken.json()["state"] == "failed"
    assert any(e.startswith("lab.yaml:4:") and "level" in e for e in broken.json()["errors"])


def test_another_instructor_cannot_put_an_unpublished_lab_in_their_cohort(people):
    upload(people["author"], lab_yaml())
    resp = people["other"].post("/api/cohorts/", {"name": "c", "labs": ["mine"]}, content_type="application/json")
    assert resp.status_code == 404 and "mine" in resp.json()["error"]
    assert people["author"].post("/api/cohorts/", {"name": "c", "labs": ["mine"]},
                                 content_type="application/json").status_code == 201


# ---- 2. Preview with a real sandbox -------------------------------------------------------------

def sandboxed(test):
    """A test that starts real runc sandboxes: root only (CI is root)."""
    for mark in (pytest.mark.root, pytest.mark.sandbox, pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root")):
        test = mark(test)
    return test


def ws_close_code(web: str, client: Client, path: str) -> int:
    from tests.labs.test_sessions import ws_connect

    with ws_connect(web, client, path) as ws:
        with pytest.raises(Exception):
            while True:
                ws.recv(timeout=5)
    return ws.close_code


@sandboxed
def test_the_author_starts_a_sandbox_of_the_unpublished_lab_works_through_it_and_nobody_else_can(worker, web, people):
    from tests.labs.test_sessions import Terminal, start_session, ws_connect

    upload(people["author"], lab_yaml())
    page = people["author"].get("/labs/mine/preview/").content.decode()
    assert 'data-testid="preview-banner"' in page
    session = start_session(people["author"], "mine")
    assert session["lab"] == "mine"
    with ws_connect(web, people["author"], session["ws"]) as ws:
        term = Terminal(ws)
        term.send("touch /root/x && echo made-$((20+1))\r")
        term.expect("made-21")
    check = people["author"].post(f"/api/sessions/{session['id']}/check?wait=1", {"step": "first"}, content_type="application/json")
    assert check.json()["passed"] is True
    assert people["author"].get("/api/labs/mine/progress").json()["steps_passed"] == 1
    for name in ("other", "trainee"):
        resp = people[name].post("/api/sessions/", {"lab": "mine"}, content_type="application/json")
        assert resp.status_code == 404 and "mine" in resp.json()["error"]
        assert people[name].get(f"/api/sessions/{session['id']}/").status_code == 404
        assert people[name].post(f"/api/sessions/{session['id']}/check?wait=1", {"step": "first"},
                                 content_type="application/json").status_code == 404
        assert ws_close_code(web, people[name], session["ws"]) == 4403
    admin_session = start_session(people["admin"], "mine")  # admins may preview every lab
    assert admin_session["id"] != session["id"]
    with ws_connect(web, people["admin"], session["ws"]) as ws:  # and watch, read-only
        assert json.loads(ws.recv(timeout=10))["readonly"] is True


@sandboxed
def test_a_draft_of_a_published_lab_is_started_by_its_author_while_trainees_keep_the_live_version(worker, people):
    from tests.labs.test_sessions import start_session

    upload(people["author"], lab_yaml())
    people["author"].post("/labs/mine/publish")
    resp = upload(people["author"], lab_yaml(extra_step=True))
    assert resp["Location"] == "/labs/mine__draft/preview/"
    draft = start_session(people["author"], "mine__draft")
    assert draft["lab"] == "mine__draft"
    steps = [s["id"] for s in people["author"].get("/api/labs/mine__draft/").json()["steps"]]
    assert steps == ["first", "second"]
    assert [s["id"] for s in people["trainee"].get("/api/labs/mine/").json()["steps"]] == ["first"]
    for name in ("other", "trainee"):
        assert people[name].post("/api/sessions/", {"lab": "mine__draft"}, content_type="application/json").status_code == 404
        assert people[name].get("/labs/mine__draft/preview/").status_code == 404
        assert people[name].get("/labs/mine__draft/").status_code == 404
    assert "mine__draft" not in [lab["slug"] for lab in people["trainee"].get("/api/labs/").json()]


# ---- 3. Versions ---------------------------------------------------------------------------------

def test_a_new_version_is_a_draft_until_published_and_trainees_keep_their_progress_by_step_id(people):
    from labs.learning import progress_mark_passed
    from labs.models import Lab, Step

    upload(people["author"], lab_yaml())
    assert people["author"].post("/api/labs/mine/versions/1/publish", "{}", content_type="application/json").status_code == 200
    progress_mark_passed(user=people.trainee, step=Step.objects.get(lab__slug="mine", key="first"), by="check")

    assert upload(people["author"], lab_yaml(title="Second edition", extra_step=True)).status_code == 302
    en = {"HTTP_ACCEPT_LANGUAGE": "en"}
    live = people["trainee"].get("/api/labs/mine/", **en).json()
    assert live["title"] == "My lab" and [s["id"] for s in live["steps"]] == ["first"]  # v1 stays live
    history = people["author"].get("/api/labs/mine/versions").json()["versions"]
    assert [(v["number"], v["live"], v["published_by"]) for v in history] == [(2, False, None), (1, True, "author")]
    assert history[0]["preview"] == "mine__draft"

    published = people["author"].post("/api/labs/mine/versions/2/publish", "{}", content_type="application/json")
    assert published.status_code == 200 and published.json()["live"] is True
    live = people["trainee"].get("/api/labs/mine/", **en).json()
    assert live["title"] == "Second edition" and [s["id"] for s in live["steps"]] == ["first", "second"]
    progress = people["trainee"].get("/api/labs/mine/progress").json()
    assert progress["steps_passed"] == 1 and progress["current"] == "second"  # kept by step id
    assert Lab.objects.filter(slug="mine").count() == 1 and Lab.objects.get(slug="mine").published

    history = people["author"].get("/api/labs/mine/versions").json()["versions"]
    assert [(v["number"], v["live"], v["published_by"]) for v in history] == [(2, True, "author"), (1, False, "author")]
    assert history[0]["published_at"] > history[1]["published_at"]
    page = people["author"].get("/labs/mine/versions/").content.decode()
    assert 'data-testid="version-2" class="is-live"' in page and 'data-testid="live-version"' in page


def test_the_version_page_and_api_show_the_diff_of_the_lab_file(people):
    upload(people["author"], lab_yaml())
    upload(people["author"], lab_yaml(title="Second edition", extra_step=True))
    diff = people["author"].get("/api/labs/mine/versions/2").json()["diff"]
    (lab_file,) = diff
    assert lab_file["file"] == "lab.yaml" and lab_file["status"] == "changed"
    lines = {(line["kind"], line["text"]) for line in lab_file["lines"]}
    assert ("-", "-title: {zh-hans: 我的实验, en: My lab}") in lines
    assert ("+", "+title: {zh-hans: 我的实验, en: Second edition}") in lines
    assert ("+", "+  - id: second") in lines
    first = people["author"].get("/api/labs/mine/versions/1").json()["diff"]
    assert first[0]["status"] == "added"
    page = people["author"].get("/labs/mine/versions/2/").content.decode()
    assert '<span class="diff-add">+  - id: second</span>' in page
    assert '<span class="diff-del">-title: {zh-hans: 我的实验, en: My lab}</span>' in page
    assert people["other"].get("/labs/mine/versions/2/").status_code == 404
    assert people["admin"].get("/labs/mine/versions/2/").status_code == 200


def test_an_admin_may_publish_an_older_version_again_and_the_history_says_who(people):
    upload(people["author"], lab_yaml())
    people["author"].post("/labs/mine/versions/1/publish")
    upload(people["author"], lab_yaml(extra_step=True))
    people["author"].post("/labs/mine/versions/2/publish")
    assert people["admin"].post("/labs/mine/versions/1/publish").status_code == 302
    history = {v["number"]: v for v in people["admin"].get("/api/labs/mine/versions").json()["versions"]}
    assert history[1]["live"] and history[1]["published_by"] == "admin" and not history[2]["live"]
    assert [s["id"] for s in people["trainee"].get("/api/labs/mine/").json()["steps"]] == ["first"]


# ---- 4. Test from the page ----------------------------------------------------------------------

def read_until(ws, done, timeout: float = 120) -> list[dict]:
    """JSON messages from a WebSocket until `done(messages)` holds (a lab test takes long)."""
    return ws_messages(ws, done, timeout=timeout)


@sandboxed
def test_the_test_button_runs_labs_test_on_a_worker_and_streams_the_table_into_the_page(worker, web, people):
    from tests.labs.test_sessions import ws_connect

    upload(people["author"], lab_yaml(extra_step=True))
    with ws_connect(web, people["author"], "/ws/labs/mine/versions/1/test/") as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello == {"type": "hello", "state": "none", "rows": []}
        resp = people["author"].post("/api/labs/mine/versions/1/test", "{}", content_type="application/json")
        assert resp.status_code == 202 and resp.json()["state"] == "queued"
        events = read_until(ws, lambda s: any(e["type"] == "done" for e in s))
    rows = [e for e in events if e["type"] == "row"]
    assert [(r["index"], r["row"]["step"], r["row"]["ok"]) for r in rows] == [(0, "first", True), (1, "second", True)]
    assert [e["state"] for e in events if e["type"] == "state"][-1] == "running"
    assert events[-1]["state"] == "passed"
    # Run by the worker host, not the web process.
    assert "labs.testruns.version_test" in worker.log.read_text()
    stored = people["author"].get("/api/labs/mine/versions/1").json()["test"]
    assert stored["state"] == "passed" and stored["passed"] == 2 and stored["by"] == "author"
    banner = people["author"].get("/labs/mine/preview/").content.decode()
    assert 'data-test-state="passed"' in banner and 'data-testid="publish-override"' not in banner
    assert people["author"].post("/labs/mine/publish").status_code == 302


@sandboxed
def test_publishing_a_version_whose_last_test_failed_needs_an_explicit_override(worker, people):
    from labs.models import Lab

    upload(people["author"], lab_yaml(check="exit 0"))  # a check that always passes: labs test fails it
    people["author"].post("/api/labs/mine/versions/1/test", "{}", content_type="application/json")
    state = wait_for(lambda: (t := people["author"].get("/api/labs/mine/versions/1").json()["test"])["state"]
                     in ("passed", "failed") and t, timeout=120, what="test done")
    assert state["state"] == "failed" and "BEFORE the solution" in state["rows"][0]["detail"]
    banner = people["author"].get("/labs/mine/preview/").content.decode()
    assert 'data-test-state="failed"' in banner and 'data-testid="publish-override"' in banner
    refused = people["author"].post("/api/labs/mine/versions/1/publish", "{}", content_type="application/json",
                                    HTTP_ACCEPT_LANGUAGE="en")
    assert refused.status_code == 409 and "failed" in refused.json()["error"]
    assert people["author"].post("/labs/mine/publish").status_code == 409
    assert not Lab.objects.get(slug="mine").published
    ok = people["author"].post("/api/labs/mine/versions/1/publish", {"override": True}, content_type="application/json")
    assert ok.status_code == 200 and ok.json()["publish_override"] is True
    page = people["author"].get("/labs/mine/versions/").content.decode()
    assert "despite a failed test" in page or "测试失败仍发布" in page


def test_the_test_socket_and_api_are_for_the_author_and_admins_only(web, people):
    upload(people["author"], lab_yaml())
    path = "/ws/labs/mine/versions/1/test/"
    assert ws_close_code(web, people["other"], path) == 4403
    assert ws_close_code(web, people["trainee"], path) == 4403
    assert ws_close_code(web, people["author"], "/ws/labs/mine/versions/9/test/") == 4404
    anonymous = Client()
    anonymous.get("/accounts/login/")
    anonymous.cookies["sessionid"] = "none"
    assert ws_close_code(web, anonymous, path) == 4401
    from tests.labs.test_sessions import ws_connect

    with ws_connect(web, people["admin"], path) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
    for name in ("other", "trainee"):
        assert people[name].post("/labs/mine/versions/1/test").status_code == 404
    assert Client().post("/api/labs/mine/versions/1/test").status_code == 401


# ---- 6. Edit in place ------------------------------------------------------------------------------

def post(client: Client, url: str, data: dict):
    return client.post(url, data, content_type="application/json")


def test_the_editor_checks_against_the_schema_and_the_loader_at_file_line_column(people):
    upload(people["author"], lab_yaml())
    files = people["author"].get("/api/labs/mine/edit").json()["files"]
    assert list(files) == ["lab.yaml"] and files["lab.yaml"].startswith("slug: mine")
    assert post(people["author"], "/api/labs/mine/edit/check", {"files": files}).json()["diagnostics"] == []
    broken = files["lab.yaml"].replace("    check:", "    chek:").replace("level: beginner", "level: expert")
    found = post(people["author"], "/api/labs/mine/edit/check", {"files": {"lab.yaml": broken}}).json()["diagnostics"]
    assert any(d["line"] == 12 and "chek" in d["message"] and "did you mean 'check'" in d["message"] for d in found), found
    assert any(d["line"] == 4 and "level" in d["message"] for d in found), found
    from labs.editing import schema_diagnostics

    (schema,) = [d for d in schema_diagnostics(broken) if "expert" in d["message"]]
    assert (schema["line"], schema["column"]) == (4, 8) and schema["message"].startswith("schema: level:")
    assert post(people["author"], "/api/labs/mine/edit/check", {"files": {"../x.yaml": ""}}).status_code == 400


def test_the_editor_previews_a_step_sanitised_and_saves_a_new_version(people):
    upload(people["author"], lab_yaml())
    html = post(people["author"], "/api/labs/mine/edit/preview",
                {"markdown": "## Layers\n\n<script>alert(1)</script>`ls`"}).json()["html"]
    assert "<h2" in html and "Layers" in html and "<script" not in html and "<code>ls</code>" in html
    files = people["author"].get("/api/labs/mine/edit").json()["files"]
    edited = files["lab.yaml"].replace("en: My lab}", "en: Edited lab}")
    saved = post(people["author"], "/api/labs/mine/edit/save", {"files": {"lab.yaml": edited}})
    assert saved.status_code == 201 and saved.json()["number"] == 2 and saved.json()["created"] is True
    again = post(people["author"], "/api/labs/mine/edit/save", {"files": {"lab.yaml": edited}})
    assert again.status_code == 200 and again.json()["number"] == 2
    diff = people["author"].get("/api/labs/mine/versions/2").json()["diff"][0]["lines"]
    assert {"kind": "+", "text": "+title: {zh-hans: 我的实验, en: Edited lab}"} in diff
    bad = post(people["author"], "/api/labs/mine/edit/save", {"files": {"lab.yaml": edited.replace("minutes: 5", "minutes: many")}})
    assert bad.status_code == 400 and "lab.yaml:5:" in bad.json()["error"]
    other_slug = post(people["author"], "/api/labs/mine/edit/save", {"files": {"lab.yaml": edited.replace("slug: mine", "slug: yours")}})
    assert other_slug.status_code == 400 and "slug" in other_slug.json()["error"]


def test_only_the_author_and_admins_may_edit(people):
    upload(people["author"], lab_yaml())
    files = {"lab.yaml": lab_yaml(title="Taken over")}
    for name in ("other", "trainee"):
        assert people[name].get("/labs/mine/edit/").status_code == 404
        assert people[name].get("/api/labs/mine/edit").status_code == 404
        assert post(people[name], "/api/labs/mine/edit/check", {"files": files}).status_code == 404
        assert post(people[name], "/api/labs/mine/edit/preview", {"markdown": "x"}).status_code == 404
        assert post(people[name], "/api/labs/mine/edit/save", {"files": files}).status_code == 404
    assert people["trainee"].get("/api/labs/schema").status_code == 404
    assert people["other"].get("/api/labs/schema").json()["title"].startswith("Container Image Lab")
    assert people["admin"].get("/labs/mine/edit/").status_code == 200
    assert post(people["admin"], "/api/labs/mine/edit/save", {"files": files}).status_code == 201
    assert Client().get("/api/labs/mine/edit").status_code == 401
    assert people["author"].get("/labs/mine/edit/").status_code == 200


def test_uploaded_labs_come_after_the_built_in_course_and_after_their_own_prerequisites(people, builtin_labs):
    from labs.models import Lab

    builtin = [lab.slug for lab in builtin_labs]
    assert len(builtin) > 2
    # Uploaded in this order: the one that needs the other comes first.
    needs = lab_yaml("up-second", title="Second").replace("level: beginner", "level: beginner\nprerequisites: [up-first]")
    assert upload(people["author"], lab_yaml("up-first", title="First")).status_code == 302
    assert upload(people["author"], lab_yaml("up-zeta", title="Zeta")).status_code == 302
    assert upload(people["author"], needs).status_code == 302
    for slug in ("up-first", "up-zeta", "up-second"):
        assert people["author"].post(f"/labs/{slug}/publish").status_code == 302
    catalogue = [lab["slug"] for lab in people["trainee"].get("/api/labs/").json()]
    assert catalogue[:len(builtin)] == builtin  # the built-in course, whole and in its order
    assert catalogue[len(builtin):] == ["up-first", "up-zeta", "up-second"]
    # A new version of a lab others need keeps it before them; the built-in course is re-imported
    # (say it grew) and the uploads stay after it.
    assert upload(people["author"], lab_yaml("up-first", title="First again", extra_step=True)).status_code == 302
    from labs.labfile import course_order, discover_labs, load_lab
    from labs.services import lab_import
    from tests.conftest import ROOT

    for i, spec in enumerate(course_order([load_lab(p) for p in discover_labs(ROOT / "labs" / "builtin")])):
        lab_import(spec=spec, position=i)
    order = list(Lab.objects.filter(published=True, draft_of__isnull=True).values_list("slug", flat=True))
    assert order == builtin + ["up-first", "up-zeta", "up-second"]

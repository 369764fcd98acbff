"""Uploaded labs are imported by a Celery task with a time limit, not in the request
(issue 13 item 8): the page and the API follow the import on a real worker, errors keep
their file:line:column, and an import past its limit is stopped and leaves nothing."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from django.test import Client

from tests.conftest import wait_for
from tests.labs.test_authoring import archive, lab_yaml

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def author(make_user):
    from django.contrib.auth.models import Group

    user = make_user("author")
    user.groups.add(Group.objects.get_or_create(name="instructors")[0])
    client = Client()
    client.force_login(user)
    return client


def post(client: Client, data: bytes, name: str = "lab.tar.gz", api: bool = False):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post("/api/authoring/upload" if api else "/labs/upload/", {"archive": SimpleUploadedFile(name, data)})


def settled(client: Client, url: str) -> dict:
    """The upload's JSON once the worker is done with it."""
    return wait_for(lambda: (v := client.get(url).json())["state"] in ("done", "failed") and v,
                    timeout=60, what="the import to finish")


def test_the_request_queues_the_import_and_a_worker_does_it_while_the_page_follows(worker, author):
    from labs.models import Lab, LabUpload

    resp = post(author, archive(lab_yaml()))
    assert resp.status_code == 302 and resp["Location"].startswith("/labs/upload/")
    upload_id = resp["Location"].split("/")[3]
    view = settled(author, f"/api/authoring/uploads/{upload_id}")
    assert view["state"] == "done" and view["lab"] == "mine" and view["number"] == 1 and view["created"] is True
    lab = Lab.objects.get(slug="mine")
    assert lab.published is False and lab.versions.get().created_by.username == "author"
    page = author.get(resp["Location"])
    assert page.status_code == 302 and page["Location"] == "/labs/mine/preview/"
    assert bytes(LabUpload.objects.get(id=upload_id).archive) == b""  # the archive is not kept
    # The API queues the same way: 202 and a URL to follow.
    api = post(author, archive(lab_yaml(title="Second")), api=True)
    assert api.status_code == 202 and api.json()["state"] in ("queued", "importing", "done")
    assert settled(author, api.json()["url"])["number"] == 2


def test_errors_from_the_worker_keep_file_line_and_column(worker, author):
    resp = post(author, archive(lab_yaml().replace("level: beginner", "level: expert")))
    url = resp["Location"]
    view = settled(author, f"/api/authoring/uploads/{url.split('/')[3]}")
    assert view["state"] == "failed" and any(e.startswith("lab.yaml:4:") and "level" in e for e in view["errors"])
    page = author.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans")
    text = page.content.decode()
    assert page.status_code == 400 and "实验没有导入" in text and 'data-testid="upload-errors"' in text
    assert "lab.yaml:4:" in text


def test_an_import_past_its_time_limit_is_stopped_and_leaves_nothing(worker, author, settings):
    from labs.models import Lab, LabUpload

    settings.LAB_UPLOAD_SECONDS = 0.05  # read by the request, sent with the task
    files = {f"steps/n{i}.md": "x" * 2000 for i in range(1500)}
    resp = post(author, archive(lab_yaml(), extra=files))
    view = settled(author, f"/api/authoring/uploads/{resp['Location'].split('/')[3]}")
    assert view["state"] == "failed" and view["errors"] == ["lab.tar.gz: the import took longer than 0.05 s and was stopped"]
    assert not Lab.objects.exists()
    labs_dir = Path(settings.LAB_DATA_DIR) / "labs"
    assert not [p for p in labs_dir.iterdir() if p.name.startswith(".upload-")]  # nothing half-built
    assert bytes(LabUpload.objects.get(id=resp["Location"].split("/")[3]).archive) == b""
    # The same lab with a sane limit goes through.
    settings.LAB_UPLOAD_SECONDS = 60
    again = post(author, archive(lab_yaml(), extra=files), api=True)
    assert settled(author, again.json()["url"])["state"] == "done"


def test_the_waiting_page_speaks_both_languages_and_only_to_its_uploader(author, make_user):
    from labs.models import LabUpload

    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.get(username="author")
    job = LabUpload.objects.create(id="b" * 32, user=owner, name="lab.tar.gz", seconds=60)  # no worker picked it yet
    en = author.get(f"/labs/upload/{job.id}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    zh = author.get(f"/labs/upload/{job.id}/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert 'data-state="queued"' in en and "Waiting for a worker" in en and "labs/upload.js" in en
    assert "等待工作节点" in zh and "最多 60 秒" in zh
    other = Client()
    other.force_login(make_user("other"))
    assert other.get(f"/labs/upload/{job.id}/").status_code == 404
    assert other.get(f"/api/authoring/uploads/{job.id}").status_code == 404
    assert Client().get(f"/api/authoring/uploads/{job.id}").status_code == 401


def test_an_import_killed_past_the_hard_limit_shows_as_failed(author):
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from labs.models import LabUpload

    owner = get_user_model().objects.get(username="author")
    job = LabUpload.objects.create(id="c" * 32, user=owner, name="lab.tar.gz", seconds=1, state="importing",
                                   started_at=timezone.now() - timedelta(seconds=120))
    view = author.get(f"/api/authoring/uploads/{job.id}").json()
    assert view["state"] == "failed" and "took longer than 1 s" in view["errors"][0]
    assert author.get(f"/labs/upload/{job.id}/").status_code == 400


def test_a_redelivered_import_task_does_nothing_the_second_time(author):
    from labs.models import LabUpload
    from labs.tasks import lab_upload_import

    resp = post(author, archive(lab_yaml()))
    upload_id = resp["Location"].split("/")[3]
    first = lab_upload_import(upload_id)  # a worker of this run may have claimed it already
    assert lab_upload_import(upload_id) == "taken" and first in ("done", "taken")
    settled(author, f"/api/authoring/uploads/{upload_id}")
    assert LabUpload.objects.get(id=upload_id).version.number == 1
    assert LabUpload.objects.get(id=upload_id).version.lab.versions.count() == 1


def test_what_needs_no_reading_is_refused_in_the_request(author, make_user):
    data = archive(lab_yaml())
    resp = post(author, data, name="lab.txt")
    assert resp.status_code == 400 and "expected a .tar.gz" in resp.content.decode()
    trainee = Client()
    trainee.force_login(make_user("trainee"))
    assert post(trainee, data).status_code == 404
    assert post(trainee, data, api=True).status_code == 404
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz"):
        pass
    assert post(author, buf.getvalue(), api=True).status_code == 202  # read by the worker, not here

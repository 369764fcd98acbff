"""Uploaded labs move after the built-in course (their position was set at upload, and
could land inside it): the same placement labs.authoring.labs_place_uploaded makes."""
from __future__ import annotations

from django.db import migrations

UPLOADED_FROM = 10_000


def place_uploaded(apps, schema_editor) -> None:
    Lab = apps.get_model("labs", "Lab")
    uploaded = list(Lab.objects.filter(owner__isnull=False, draft_of__isnull=True).order_by("pk"))
    known = {lab.slug for lab in uploaded}
    done: set[str] = set()
    pending = list(uploaded)
    position = UPLOADED_FROM
    while pending:
        ready = [lab for lab in pending if all(p in done or p not in known for p in lab.prerequisites or ())]
        nxt = (ready or pending)[0]
        Lab.objects.filter(pk=nxt.pk).update(position=position)
        position += 1
        done.add(nxt.slug)
        pending.remove(nxt)


class Migration(migrations.Migration):
    dependencies = [("labs", "0006_merge_round2")]
    operations = [migrations.RunPython(place_uploaded, migrations.RunPython.noop)]

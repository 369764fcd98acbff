# Uploaded labs are imported by a Celery task with a time limit (issue 13 item 8):
# LabUpload records each import's state and result. Branch uidmap.
from django.conf import settings
from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("labs", "0006_merge_round2"),
    ]

    operations = [
        migrations.CreateModel(
            name="LabUpload",
            fields=[
                ("id", models.CharField(editable=False, max_length=32, primary_key=True, serialize=False)),
                ("name", models.CharField(help_text="the archive's file name", max_length=255)),
                ("archive", models.BinaryField(default=b"", editable=False)),
                ("state", models.CharField(choices=[("queued", "Queued"), ("importing", "Importing"), ("done", "Done"), ("failed", "Failed")], default="queued", max_length=16)),
                ("phase", models.CharField(blank=True, help_text="extracting, validating, storing", max_length=32)),
                ("errors", models.JSONField(default=list)),
                ("created", models.BooleanField(default=False, help_text="a new version (false: same files as the last one)")),
                ("seconds", models.FloatField(help_text="time limit of the import")),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to=settings.AUTH_USER_MODEL)),
                ("version", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="labs.labversion")),
            ],
            options={"ordering": ["-created_at"]},
        ),
    ]

# Hosts that fetched a committed image from the host that made it (issue 17, branch inside2):
# any of them can serve it to another host or to a download.
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("labs", "0006_merge_round2"),
    ]

    operations = [
        migrations.AddField(
            model_name="committedimage",
            name="holders",
            field=models.JSONField(blank=True, default=list,
                                   help_text="other hosts that fetched this commit since (their stores hold it too)"),
        ),
    ]

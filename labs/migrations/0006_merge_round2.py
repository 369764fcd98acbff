# Joins the migrations that the start/survival (0004_session_state_changed_at), trainee
# (0004_trainee_verbose_names, 0005_trainee_lab_prerequisites) and instructors
# (0004_instructors_versions) and inside (0005_inside_checkpoints) work added side by side;
# no operations of its own.
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("labs", "0004_instructors_versions"),
        ("labs", "0004_session_state_changed_at"),
        ("labs", "0005_trainee_lab_prerequisites"),
        ("labs", "0005_inside_checkpoints"),
    ]

    operations = []

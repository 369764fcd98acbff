"""Joins the migrations of this round's branches (image holders, queued uploads)."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("labs", "0007_inside2_image_holders"),
        ("labs", "0007_uidmap_uploads"),
    ]
    operations = []

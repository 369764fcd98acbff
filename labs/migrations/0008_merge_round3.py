"""Joins the migrations of this round's branches (image holders, admin names, uploaded labs' order, queued uploads)."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("labs", "0007_inside2_image_holders"),
        ("labs", "0007_instr_admin_names"),
        ("labs", "0007_tabs_uploaded_order"),
        ("labs", "0007_uidmap_uploads"),
    ]
    operations = []

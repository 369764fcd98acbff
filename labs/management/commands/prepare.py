"""`manage.py prepare`: what `./lab up` needs before it starts anything, in one process —
the database migrated, the default image built, the built-in labs imported, the admin
account made (its password printed once). Each step is a no-op when already done."""
from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Migrate, build images/base.yaml, import labs/builtin and make the admin account (idempotent)."

    def handle(self, *args, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("image", "build", "images/base.yaml")
        call_command("labs", "import", "labs/builtin")
        call_command("bootstrap")

"""`manage.py cohorts instructor NAME…`: let users create and run cohorts."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from cohorts.services import instructor_grant


class Command(BaseCommand):
    help = "Cohort administration: `instructor NAME…` adds users to the instructors group."

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["instructor"])
        parser.add_argument("usernames", nargs="+")

    def handle(self, *args, action: str, usernames: list[str], **options) -> None:
        for name in usernames:
            try:
                instructor_grant(username=name)
            except LookupError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"{name} is an instructor")

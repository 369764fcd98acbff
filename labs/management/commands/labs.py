"""`manage.py labs <subcommand>`: work with lab directories (validate; import/test come later)."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from labs.labfile import ImageResolver, validate_labs


def store_image_resolver() -> ImageResolver | None:
    """`ImageStore.resolve` of this installation's image store, or None if the store isn't there yet."""
    try:
        from sandbox.images.store import ImageStore
    except ImportError:
        return None
    return ImageStore(settings.LAB_DATA_DIR / "images").resolve


class Command(BaseCommand):
    help = "Work with lab directories (lab.yaml + Markdown)."

    def add_arguments(self, parser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="subcommand")
        validate = subcommands.add_parser("validate", help="Check labs; print file:line:column: message per error.")
        validate.add_argument("paths", nargs="+", type=Path, help="a lab directory, or a directory of labs")
        validate.add_argument("--images", action="store_true", help="also check each lab's image is in the image store")

    def handle(self, *args, subcommand: str, **options) -> None:
        getattr(self, f"handle_{subcommand}")(**options)

    def handle_validate(self, *, paths: list[Path], images: bool, **options) -> None:
        """Validate labs: every error on its own line, exit status 1 if there is any."""
        specs, errors = validate_labs(paths, image_resolver=store_image_resolver() if images else None)
        for error in errors:
            self.stderr.write(str(error), style_func=lambda text: text)
        if errors:
            raise CommandError(f"{len(errors)} error(s) in the labs", returncode=1)
        self.stdout.write(f"ok: {len(specs)} labs")

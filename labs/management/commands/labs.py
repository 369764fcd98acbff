"""`manage.py labs <subcommand>`: work with lab directories (validate, import, test)."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from labs.labfile import ImageResolver, course_order, validate_labs


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
        test = subcommands.add_parser("test", help="Run labs in fresh sandboxes: check fails, solution, check passes.")
        test.add_argument("slugs_or_paths", nargs="*", help="lab directories, or slugs of this site's labs (uploaded or built-in)")
        test.add_argument("--all", action="store_true", help="every built-in lab and every uploaded one")
        imp = subcommands.add_parser("import", help="Load labs into the site (idempotent; progress follows step ids).")
        imp.add_argument("paths", nargs="+", type=Path, help="a lab directory, or a directory of labs")

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

    def handle_import(self, *, paths: list[Path], **options) -> None:
        """Validate, then create or update each lab; unchanged labs are left alone."""
        from labs.services import lab_import

        specs, errors = validate_labs(paths)
        for error in errors:
            self.stderr.write(str(error), style_func=lambda text: text)
        if errors:
            raise CommandError(f"{len(errors)} error(s): nothing imported", returncode=1)
        for position, spec in enumerate(course_order(specs)):
            lab, changed = lab_import(spec=spec, position=position)
            self.stdout.write(f"{'imported' if changed else 'unchanged'}: {lab.slug} ({len(spec.steps)} steps, {spec.version[:12]})")

    def handle_test(self, *, slugs_or_paths: list[str], all: bool, **options) -> None:
        """Prove every step of the labs in real sandboxes; exit 1 on any failure."""
        from labs.labtest import LabTestError, lab_dirs, labtest_host, test_lab
        from labs.hostconfig import host_config

        if not all and not slugs_or_paths:
            raise CommandError("name labs (slugs or paths) or pass --all")
        try:
            paths = lab_dirs(slugs_or_paths, every=all, builtin=Path(settings.BASE_DIR) / "labs" / "builtin")
        except LabTestError as exc:
            raise CommandError(str(exc)) from None
        specs, errors = validate_labs(paths)
        for error in errors:
            self.stderr.write(str(error), style_func=lambda text: text)
        if errors:
            raise CommandError(f"{len(errors)} error(s) in the labs", returncode=1)
        rows = []

        def say(o) -> None:
            rows.append(o)
            mark = self.style.SUCCESS("PASS") if o.ok else self.style.ERROR("FAIL")
            self.stdout.write(f"{mark}  {o.lab:<24} {o.step:<28} {o.seconds:6.2f}s  {o.detail}")

        try:
            with labtest_host(host_config(), say=self.stdout.write) as cfg:
                for spec in specs:
                    test_lab(spec, cfg, say=say)
        except (LabTestError, RuntimeError) as exc:
            raise CommandError(str(exc)) from None
        failed = [r for r in rows if not r.ok]
        self.stdout.write(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
        if failed:
            raise CommandError(f"{len(failed)} step(s) failed", returncode=1)

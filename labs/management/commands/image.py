"""`manage.py image <subcommand>`: build, list, inspect, import, export, rm, gc images."""
from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from labs.inside.services import checkpoints_orphaned
from sandbox.images import ImageError, ImageStore
from sandbox.images.gc import collect
from sandbox.images.oci import export_image, import_image
from sandbox.images.recipes import build


class Command(BaseCommand):
    help = "Work with the image store: OCI content-addressed layers (see docs/images.md)."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="subcommand")
        p = sub.add_parser("build", help="Build an image from a recipe YAML.")
        p.add_argument("recipe", type=Path)
        p.add_argument("--tag", help="name:tag (default: the recipe's tag)")
        sub.add_parser("list", help="List images.")
        p = sub.add_parser("inspect", help="Print an image as JSON, like docker image inspect.")
        p.add_argument("ref")
        p = sub.add_parser("import", help="Import an OCI layout dir (dir[:tag]) or a docker-save tar.")
        p.add_argument("path")
        p.add_argument("--tag", help="name:tag to give it")
        p = sub.add_parser("export", help="Export an image as an OCI layout or a docker-save tar.")
        p.add_argument("ref")
        p.add_argument("path", type=Path)
        p.add_argument("--format", choices=["oci", "docker"], default="oci")
        p = sub.add_parser("rm", help="Untag an image (its layers go at the next gc).")
        p.add_argument("ref")
        sub.add_parser("gc", help="Remove blobs and layers no image names and no live sandbox uses.")

    def handle(self, *args, subcommand: str, **options) -> None:
        store = ImageStore(Path(settings.LAB_DATA_DIR) / "images", uid_base=settings.LAB_SANDBOX_UID)
        try:
            getattr(self, f"handle_{subcommand}")(store, **options)
        except (ImageError, OSError) as exc:
            raise CommandError(str(exc)) from exc

    def handle_build(self, store: ImageStore, *, recipe: Path, tag: str | None, **_) -> None:
        image = build(recipe, store, tag=tag, progress=self.stdout.write)
        self.stdout.write(f"{image.ref} {image.id}")

    def handle_list(self, store: ImageStore, **_) -> None:
        for image in store.list():
            self.stdout.write(f"{image.ref:40} {image.id[7:19]}  {len(image.diff_ids):3} layers  "
                              f"{image.size / 1e6:7.1f} MB  {image.config.get('created', '')}")

    def handle_inspect(self, store: ImageStore, *, ref: str, **_) -> None:
        self.stdout.write(json.dumps([store.resolve(ref).inspect()], indent=2, ensure_ascii=False))

    def handle_import(self, store: ImageStore, *, path: str, tag: str | None, **_) -> None:
        image = import_image(Path(path), store, tag=tag)
        self.stdout.write(f"{image.ref} {image.id}")

    def handle_export(self, store: ImageStore, *, ref: str, path: Path, format: str, **_) -> None:
        export_image(store.resolve(ref), store, path, fmt=format)
        self.stdout.write(f"{ref} -> {path} ({format})")

    def handle_rm(self, store: ImageStore, *, ref: str, **_) -> None:
        store.remove(ref)
        self.stdout.write(f"untagged {ref}")

    def handle_gc(self, store: ImageStore, **_) -> None:
        for ref in checkpoints_orphaned(refs=list(store.refs())):
            store.remove(ref)  # a checkpoint of a session that ended without its host
            self.stdout.write(f"untagged {ref}")
        report = collect(store)  # sandbox.images.gc
        self.stdout.write(f"removed {report.blobs} blobs ({report.bytes / 1e6:.1f} MB), {report.layers} layer dirs;"
                          f" kept {len(report.kept_in_use)} layers only live sandboxes use")

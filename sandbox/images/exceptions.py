"""Errors of the image store, each with a message a user or operator can act on."""
from __future__ import annotations

from sandbox.exceptions import SandboxError


class ImageError(SandboxError):
    """Base class: something about an image, a layer or a recipe went wrong."""


class ImageNotFound(ImageError):
    """No image of that name:tag is in the store."""

    def __init__(self, ref: str, known: list[str] | None = None) -> None:
        hint = f" Known images: {', '.join(sorted(known))}." if known else " The store is empty."
        super().__init__(
            f"Image {ref!r} is not in the image store.{hint}"
            f" Build it with `manage.py image build images/<recipe>.yaml` or import it with"
            f" `manage.py image import <path> --tag {ref}`."
        )
        self.ref = ref


class LayerError(ImageError):
    """A layer tar is malformed or hostile, or a directory cannot become a layer."""


class RecipeError(ImageError):
    """An image recipe is invalid or one of its steps failed."""


class OCIError(ImageError):
    """An OCI image layout or docker-save archive cannot be read or written."""

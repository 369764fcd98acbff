"""The image store: OCI content-addressed layers, recipes, OCI/docker import and export."""
from __future__ import annotations

from sandbox.images.exceptions import ImageError, ImageNotFound, LayerError, OCIError, RecipeError
from sandbox.images.store import Image, ImageStore

__all__ = ["Image", "ImageError", "ImageNotFound", "ImageStore", "LayerError", "OCIError", "RecipeError"]

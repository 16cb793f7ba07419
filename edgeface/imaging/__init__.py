"""Reading and validating images: the one place where pixels enter edgeface."""

from edgeface.imaging.load import MAX_PIXELS, ensure_rgb_uint8, load_image

__all__ = ["MAX_PIXELS", "ensure_rgb_uint8", "load_image"]

"""Read the image file of a sample into ``results['img']`` (RGB, uint8)."""
from __future__ import annotations

import cv2
import numpy as np

from toolbox.datasets.base import ImageDecodeError, ImageSizeError, MissingImageError
from toolbox.datasets.transforms.base import init_geometry
from toolbox.errors import DataError

__all__ = ["LoadImage"]


class LoadImage:
    """Decode ``results['img_path']`` and start the geometry record.

    Args:
        ignore_orientation: ignore EXIF orientation, so the pixel grid is the
            one the annotations were drawn on (COCO/VOC convention).
        check_shape: raise if the decoded size differs from the annotated
            ``ori_shape`` (boxes would silently be wrong otherwise).

    A missing file raises :class:`~toolbox.datasets.base.MissingImageError`,
    an undecodable one :class:`~toolbox.datasets.base.ImageDecodeError` and
    one of another size than annotated
    :class:`~toolbox.datasets.base.ImageSizeError`, all naming the path (and
    all skipped by a dataset's ``skip_bad_images``).
    """

    def __init__(self, ignore_orientation: bool = True, check_shape: bool = True):
        self.flags = cv2.IMREAD_COLOR | (cv2.IMREAD_IGNORE_ORIENTATION if ignore_orientation else 0)
        self.check_shape = check_shape

    def __call__(self, results: dict) -> dict:
        path = results["img_path"]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise MissingImageError(f"image file not found: {path}") from None
        except OSError as e:
            raise DataError(f"cannot read image file {path}: {e}") from e
        img = cv2.imdecode(np.frombuffer(data, np.uint8), self.flags) if data else None
        if img is None:
            raise ImageDecodeError(f"cannot decode image file {path} ({len(data)} bytes)")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        expected = results.get("ori_shape")
        if self.check_shape and expected is not None and tuple(expected) != (h, w):
            raise ImageSizeError(f"image {path} is {h}x{w} (h x w) but its annotation says "
                            f"{expected[0]}x{expected[1]}")
        results["img"] = img
        results["ori_shape"] = (h, w)
        return init_geometry(results)

    def __repr__(self) -> str:
        return f"LoadImage(check_shape={self.check_shape})"

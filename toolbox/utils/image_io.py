"""Reading image files as RGB arrays, with errors naming the path."""
from __future__ import annotations

import os

import numpy as np

from toolbox.errors import DataError

__all__ = ["read_image"]


def read_image(path: str) -> np.ndarray:
    """An image file as RGB uint8, with errors naming the path."""
    import cv2
    if not os.path.isfile(path):
        raise DataError(f"image file not found: {path}")
    data = np.fromfile(path, np.uint8)
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise DataError(f"cannot decode image file {path} ({data.size} bytes): not an image?")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

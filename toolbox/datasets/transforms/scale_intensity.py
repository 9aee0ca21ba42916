"""Map an intensity window [a_min, a_max] linearly to [b_min, b_max] (e.g. CT HU)."""
from __future__ import annotations

import numpy as np

__all__ = ["ScaleIntensity"]


class ScaleIntensity:
    """``img = (img - a_min) / (a_max - a_min) * (b_max - b_min) + b_min``, float32.

    With ``clip`` the result is clipped to [b_min, b_max]. UNETR's CT
    setting is ``a_min=-175, a_max=250, b_min=0, b_max=1, clip=True``
    (MONAI's ``ScaleIntensityRange``). Works on images and volumes alike.
    """

    def __init__(self, a_min: float, a_max: float, b_min: float = 0.0, b_max: float = 1.0,
                 clip: bool = False):
        if a_max == a_min:
            raise ValueError(f"ScaleIntensity: a_min and a_max must differ, got {a_min}")
        self.a_min, self.a_max = float(a_min), float(a_max)
        self.b_min, self.b_max = float(b_min), float(b_max)
        self.clip = bool(clip)

    def __call__(self, results: dict) -> dict:
        img = np.asarray(results["img"], np.float32)
        img = (img - self.a_min) / (self.a_max - self.a_min) * (self.b_max - self.b_min) \
            + self.b_min
        if self.clip:
            img = np.clip(img, min(self.b_min, self.b_max), max(self.b_min, self.b_max))
        results["img"] = img.astype(np.float32)
        return results

    def __repr__(self) -> str:
        return (f"ScaleIntensity(a_min={self.a_min}, a_max={self.a_max}, b_min={self.b_min}, "
                f"b_max={self.b_max}, clip={self.clip})")

"""Z-score a volume (or image) per channel from its own statistics."""
from __future__ import annotations

import numpy as np

__all__ = ["NormalizeIntensity"]


class NormalizeIntensity:
    """``img = (img - mean) / std`` per channel of ``img`` [C, D, H, W].

    The statistics are the sample's own, over every voxel or only the
    non-zero ones (``nonzero=True``, MRI brain-mask style: zero voxels stay
    0); a constant channel is only centred. For 2D images [H, W, C] use
    ``channel_axis=-1``.
    """

    def __init__(self, nonzero: bool = False, channel_axis: int = 0):
        self.nonzero = bool(nonzero)
        self.channel_axis = int(channel_axis)

    def __call__(self, results: dict) -> dict:
        img = np.moveaxis(np.asarray(results["img"], np.float32), self.channel_axis, 0).copy()
        for ch in img:
            mask = ch != 0 if self.nonzero else np.ones(ch.shape, bool)
            if not mask.any():
                continue
            values = ch[mask]
            std = float(values.std())
            ch[mask] = (values - values.mean()) / (std if std > 0 else 1.0)
        results["img"] = np.moveaxis(img, 0, self.channel_axis)
        return results

    def __repr__(self) -> str:
        return f"NormalizeIntensity(nonzero={self.nonzero}, channel_axis={self.channel_axis})"

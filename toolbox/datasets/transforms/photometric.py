"""Colour jitter (brightness, contrast, saturation, hue) through albumentations."""
from __future__ import annotations

from toolbox.datasets.transforms.base import reseed

__all__ = ["ColorJitter"]


class ColorJitter:
    """Randomly change brightness, contrast, saturation and hue with probability ``prob``.

    Arguments follow torchvision: ``brightness=0.2`` draws a factor from
    [0.8, 1.2]; ``hue=0.02`` shifts the hue by up to 0.02 of a turn. Pixels
    only: boxes and masks are untouched. Apply it before ``Normalize``.
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue: float = 0.02, prob: float = 0.8):
        import albumentations as A

        for name, v, hi in (("brightness", brightness, None), ("contrast", contrast, None),
                            ("saturation", saturation, None), ("hue", hue, 0.5)):
            if v < 0 or (hi is not None and v > hi):
                raise ValueError(f"ColorJitter: {name} must be >= 0"
                                 f"{f' and <= {hi}' if hi else ''}, got {v}")
        self.params = dict(brightness=brightness, contrast=contrast,
                           saturation=saturation, hue=hue)
        self.prob = prob
        self._compose = A.Compose([A.ColorJitter(
            brightness=(max(0.0, 1 - brightness), 1 + brightness),
            contrast=(max(0.0, 1 - contrast), 1 + contrast),
            saturation=(max(0.0, 1 - saturation), 1 + saturation),
            hue=(-hue, hue), p=prob)])

    def __call__(self, results: dict) -> dict:
        reseed(self._compose)
        results["img"] = self._compose(image=results["img"])["image"]
        return results

    def __repr__(self) -> str:
        return f"ColorJitter({self.params}, prob={self.prob})"

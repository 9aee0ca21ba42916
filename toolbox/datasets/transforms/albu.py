"""Any albumentations transform, by name, with boxes and masks kept in sync."""
from __future__ import annotations

import difflib
import warnings
from typing import Any, Sequence

from toolbox.datasets.transforms.base import bbox_params, reseed, run_albumentations
from toolbox.errors import ConfigArgumentError, UnknownComponentError
from toolbox.registry import check_arguments

__all__ = ["Albu"]


def build_albumentation(cfg: dict) -> Any:
    """Build ``dict(type='HueSaturationValue', ...)``; nested configs (``OneOf``) too."""
    import albumentations as A

    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ConfigArgumentError(f"Albu: each transform must be a dict with a 'type', got {cfg!r}")
    args = dict(cfg)
    name = args.pop("type")
    cls = getattr(A, name, None) if isinstance(name, str) else name
    if not callable(cls):
        names = [n for n in dir(A) if n[:1].isupper()]
        close = difflib.get_close_matches(str(name), names, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownComponentError(f"Albu: albumentations {A.__version__} has no transform "
                                    f"'{name}'.{hint}")
    for key, value in args.items():
        if isinstance(value, dict) and "type" in value:
            args[key] = build_albumentation(value)
        elif isinstance(value, (list, tuple)) and value and all(
                isinstance(v, dict) and "type" in v for v in value):
            args[key] = [build_albumentation(v) for v in value]
    check_arguments(cls, args, "albumentations transform")  # unknown keys: an error
    try:
        return cls(**args)
    except (TypeError, ValueError) as e:  # pydantic's ValidationError is a ValueError
        raise ConfigArgumentError(f"Albu: bad arguments for albumentations.{name}: {e}") from e


class Albu:
    """Wrap albumentations transforms, e.g.
    ``Albu(transforms=[dict(type='HueSaturationValue', p=0.5), dict(type='Blur')])``.

    Boxes (dropped below ``min_visibility`` / ``min_area``), labels, ignore
    flags, masks and a segmentation label map (``gt_seg_map``; set
    ``fill_mask=255`` on padding transforms so padding is ignored) stay in sync. Albumentations does not report the
    geometry it applied, so ``scale_factor`` / ``crop_offset`` / ``flip`` are
    not updated: use it for photometric changes, or for geometric ones in
    training pipelines only (never in a test pipeline).
    """

    def __init__(self, transforms: Sequence[dict], min_visibility: float = 0.0,
                 min_area: float = 0.0):
        import albumentations as A

        if isinstance(transforms, dict) or not transforms:
            raise ConfigArgumentError("Albu: transforms must be a non-empty list of "
                                      "dict(type=<albumentations name>, ...)")
        self.cfgs = list(transforms)
        with warnings.catch_warnings():  # pixel-only lists make albumentations warn
            warnings.filterwarnings("ignore", message="Got processor for bboxes")
            self._compose = A.Compose([build_albumentation(c) for c in self.cfgs],
                                      bbox_params=bbox_params(min_visibility, min_area))

    def __call__(self, results: dict) -> dict:
        reseed(self._compose)
        return run_albumentations(results, self._compose, with_seg_map=True)

    def __repr__(self) -> str:
        return f"Albu(transforms={self.cfgs})"

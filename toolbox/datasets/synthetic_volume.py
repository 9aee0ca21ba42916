"""The embedded synthetic 3D segmentation set, generated on first use."""
from __future__ import annotations

import os
from typing import Sequence

from toolbox.datasets import synthetic_volume_generation as gen
from toolbox.datasets.split_cache import cache_root, ensure_split
from toolbox.datasets.synthetic_volume_generation import CLASSES, SPLIT_DEFAULT_SIZES, VolumeSpec
from toolbox.datasets.volume_dataset import VolumeDataset

__all__ = ["SyntheticVolumeDataset"]


def ensure_volumes(spec: VolumeSpec, data_root: str | None = None) -> str:
    """Generate the split unless it is there; return its folder:
    ``<data_root>/<split>``, or ``$TOOLBOX_DATA_DIR/synthetic_volume/<split>-<hash>``
    (default ``~/.cache/toolbox/...``; see :mod:`toolbox.datasets.split_cache`)."""
    target = (os.path.join(data_root, spec.split) if data_root is not None else
              os.path.join(cache_root("synthetic_volume"), f"{spec.split}-{spec.variant_hash()}"))
    return ensure_split(target, spec, gen.generate, "synthetic volume set")


class SyntheticVolumeDataset(VolumeDataset):
    """CT-like noisy volumes with liver, spleen, kidneys and liver tumours.

    See :mod:`toolbox.datasets.synthetic_volume_generation` for what the volumes
    hold (intensities in HU: pair with ``ScaleIntensity(a_min=-175,
    a_max=250, clip=True)``). Generated offline and deterministically on
    first use, then read from disk as ``.npy`` through :class:`VolumeDataset`.

    Args:
        split: 'train' or 'val' (any name; each has its own volumes).
        data_root: folder to generate into (default: the cache, see
            :func:`ensure_volumes`).
        num_volumes: volumes in the split (default 24 for train, 6 otherwise).
        size: side of the cubic volumes in voxels.
        seed: the generator seed.
        noise: standard deviation of the Gaussian noise in HU.
        pipeline, test_mode: as for :class:`VolumeDataset`.
    """

    METAINFO = dict(classes=CLASSES)

    def __init__(self, split: str = "train", data_root: str | None = None,
                 num_volumes: int | None = None, size: int = 64, seed: int = 0,
                 noise: float = 20.0, pipeline: Sequence[dict] = (), test_mode: bool = False):
        self.split = split
        spec = VolumeSpec(split=split, num_volumes=int(
            num_volumes if num_volumes is not None else SPLIT_DEFAULT_SIZES.get(split, 6)),
            size=int(size), seed=int(seed), noise=float(noise))
        root = ensure_volumes(spec, data_root)
        super().__init__(data_root=root, img_dir="images", label_dir="labels",
                         split_file=f"ImageSets/{split}.txt", pipeline=pipeline,
                         test_mode=test_mode)

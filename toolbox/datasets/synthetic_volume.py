"""The embedded synthetic 3D segmentation set, generated on first use."""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from typing import Sequence

from toolbox.datasets import _synthetic_volume_gen as gen
from toolbox.datasets._synthetic_volume_gen import CLASSES, SPLIT_DEFAULT_SIZES, VolumeSpec
from toolbox.datasets.volume_dataset import VolumeDataset
from toolbox.errors import DataError

try:
    import fcntl
except ImportError:  # not POSIX: the atomic rename alone keeps datasets whole
    fcntl = None

__all__ = ["SyntheticVolumeDataset"]

logger = logging.getLogger("toolbox.datasets")


def _matches(target: str, spec: VolumeSpec) -> bool:
    """True if ``target`` holds this split; DataError if it holds something else."""
    meta = os.path.join(target, "meta.json")
    if os.path.isfile(meta):
        with open(meta, encoding="utf-8") as f:
            found = json.load(f).get("parameters", {})
        wanted = json.loads(json.dumps(spec.as_dict()))
        if found != wanted:
            diff = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
            raise DataError(f"{target} holds a synthetic volume set with other parameters "
                            f"(found, wanted): {diff}; use another data_root or delete it")
        return True
    if os.path.isdir(target) and os.listdir(target):
        raise DataError(f"{target} exists, is not empty and is not a synthetic volume set "
                        "(no meta.json); use another data_root")
    return False


def ensure_volumes(spec: VolumeSpec, data_root: str | None = None) -> str:
    """Generate the split unless it is there; return its folder.

    ``<data_root>/<split>``, or ``$TOOLBOX_DATA_DIR/synthetic_volume/<split>-<hash>``
    (default ``~/.cache/toolbox/...``). Generation runs under a lock into a
    temporary folder renamed into place, so concurrent processes never see
    half a split.
    """
    if data_root is not None:
        target = os.path.join(data_root, spec.split)
    else:
        base = os.environ.get("TOOLBOX_DATA_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "toolbox")
        target = os.path.join(base, "synthetic_volume", f"{spec.split}-{spec.variant_hash()}")
    if _matches(target, spec):
        return target
    parent, name = os.path.split(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, f".{name}.lock"), "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _matches(target, spec):
                return target
            tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}-{threading.get_ident()}")
            start = time.perf_counter()
            try:
                gen.generate(spec, tmp)
                if os.path.isdir(target):
                    os.rmdir(target)  # an empty folder (anything else was refused above)
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            logger.info("generated the synthetic volume split '%s' (%d volumes of %d^3) in "
                        "%.1f s into %s", spec.split, spec.num_volumes, spec.size,
                        time.perf_counter() - start, target)
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return target


class SyntheticVolumeDataset(VolumeDataset):
    """CT-like noisy volumes with liver, spleen, kidneys and liver tumours.

    See :mod:`toolbox.datasets._synthetic_volume_gen` for what the volumes
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

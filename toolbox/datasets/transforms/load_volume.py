"""Read a 3D volume (NIfTI, .npy or .npz) and its label volume.

Axis convention: arrays are ``[D, H, W]`` (one channel) or ``[C, D, H, W]``.
NIfTI arrays, stored (x, y, z[, c]), are transposed to (z, y, x) so that D
runs over the slices, H over rows and W over columns; the voxel size
becomes ``spacing`` (d, h, w). ``.npy`` / ``.npz`` arrays are taken as they
are (an ``.npz`` holds one array, or ``image`` / ``label`` entries).
"""
from __future__ import annotations

import os

import numpy as np

from toolbox.datasets.transforms.load_seg_annotation import check_labels
from toolbox.errors import DataError
from toolbox.structures.seg_data_sample import IGNORE_INDEX

__all__ = ["LoadVolume"]

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".npy", ".npz")


def volume_suffix(path: str) -> str | None:
    """The supported suffix ``path`` ends with, or None."""
    return next((s for s in VOLUME_SUFFIXES if path.lower().endswith(s)), None)


def read_volume(path: str, key: str = "image") -> tuple[np.ndarray, tuple[float, ...] | None]:
    """(array, spacing or None) of a volume file; NIfTI needs nibabel."""
    suffix = volume_suffix(path)
    if suffix is None:
        raise DataError(f"unsupported volume file {path}: expected one of {VOLUME_SUFFIXES}")
    if not os.path.isfile(path):
        raise DataError(f"volume file not found: {path}")
    try:
        if suffix in (".nii", ".nii.gz"):
            try:
                import nibabel
            except ImportError:
                raise DataError(f"reading the NIfTI file {path} needs nibabel "
                                "(pip install nibabel), or convert it to .npy") from None
            image = nibabel.load(path)
            data = np.asanyarray(image.dataobj)
            zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
            axes = (2, 1, 0) if data.ndim == 3 else (3, 2, 1, 0) if data.ndim == 4 else None
            if axes is None:
                return data, None
            return np.transpose(data, axes), zooms[::-1]
        if suffix == ".npy":
            return np.load(path, allow_pickle=False), None
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            name = key if key in names else names[0] if len(names) == 1 else None
            if name is None:
                raise DataError(f"{path} holds arrays {names}; expected one array or a "
                                f"'{key}' entry")
            return archive[name], None
    except DataError:
        raise
    except Exception as e:  # corrupt files: numpy / nibabel raise many kinds
        raise DataError(f"cannot read volume file {path}: {e}") from e


class LoadVolume:
    """Load ``img_path`` into ``img`` (float32 ``[C, D, H, W]``) and, when the
    sample has a ``seg_map_path``, its labels into ``gt_seg_map`` (``int64[D, H, W]``).

    Raises :class:`DataError` naming the file for an image that is not 3D or
    4D, a label volume that is not 3D (a leading channel of 1 is dropped),
    shapes that differ, or labels outside ``[0, num_classes)`` other than the
    ignore index (``num_classes`` / ``ignore_index`` come from the dataset).
    Sets ``ori_shape`` = ``img_shape`` = (D, H, W), the identity geometry,
    and ``spacing`` when the file has one (NIfTI).
    """

    def __init__(self, with_label: bool = True):
        self.with_label = with_label

    def __call__(self, results: dict) -> dict:
        path = results["img_path"]
        img, spacing = read_volume(path, "image")
        if img.ndim == 3:
            img = img[None]
        if img.ndim != 4:
            raise DataError(f"volume {path} must be 3D [D, H, W] or 4D [C, D, H, W], got "
                            f"{img.ndim} dimensions (shape {img.shape})")
        results["img"] = np.ascontiguousarray(img, dtype=np.float32)
        shape = tuple(int(s) for s in img.shape[1:])
        label_path = results.get("seg_map_path")
        if self.with_label and label_path:
            seg, _ = read_volume(label_path, "label")
            if seg.ndim == 4 and seg.shape[0] == 1:
                seg = seg[0]
            if seg.ndim != 3:
                raise DataError(f"label volume {label_path} must be 3D [D, H, W], got "
                                f"{seg.ndim} dimensions (shape {seg.shape})")
            if tuple(seg.shape) != shape:
                raise DataError(f"label volume {label_path} has shape {tuple(seg.shape)} but "
                                f"its image {path} has spatial shape {shape}")
            if seg.dtype.kind == "f":
                if not np.array_equal(seg, np.round(seg)):
                    raise DataError(f"label volume {label_path} holds non-integer values")
            elif seg.dtype.kind not in "iub":
                raise DataError(f"label volume {label_path} must hold integers, got {seg.dtype}")
            seg = seg.astype(np.int64)
            check_labels(seg, results.get("num_classes"),
                         int(results.get("ignore_index", IGNORE_INDEX)), label_path)
            results["gt_seg_map"] = seg
            results["ori_gt_seg_map"] = seg.copy()
        results["ori_shape"] = shape
        results["img_shape"] = shape
        results["scale_factor"] = (1.0, 1.0, 1.0)
        results["crop_offset"] = (0.0, 0.0, 0.0)
        results["flip"] = False
        results["flip_axes"] = ()
        if spacing is not None:
            results["spacing"] = spacing
        return results

    def __repr__(self) -> str:
        return f"LoadVolume(with_label={self.with_label})"

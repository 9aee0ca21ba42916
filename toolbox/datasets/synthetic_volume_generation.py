"""Deterministic generator of the synthetic 3D set: CT-like noisy volumes with organs.

Each volume is a cube of ``size`` voxels in Hounsfield-like units (int16):
air (-1000) around an elliptic body of soft tissue (~30) with a fat rim
(~-90), and randomly placed, sized and rotated ellipsoid organs:

=========  ==========================  =========  ================
label      organ                       HU (mean)  typical share
=========  ==========================  =========  ================
1 liver    one big ellipsoid, right    65         ~2.5 % of voxels
2 spleen   one medium, left            50         ~0.25 %
3 kidney   two small, posterior        160        ~0.1 %
4 tumor    0-3 small spheres in liver  25         ~0.02 % (absent in ~1/4)
=========  ==========================  =========  ================

so the classes are imbalanced like abdominal organs. Liver and spleen differ
by only 15 HU (a 20 HU noise sigma by default): position and shape matter.
A smooth bias field, per-volume intensity jitter and partial-volume blur
keep it from being a threshold task. Everything derives from ``seed``, the
split name and the volume index.

Layout: ``images/<split>_000.npy`` (int16 [D, H, W]), ``labels/<split>_000.npy``
(uint8), ``ImageSets/<split>.txt``, ``meta.json`` (parameters, statistics).
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from toolbox.errors import DataError

# VolumeSpec describes a split; it is not a component
__all__ = ["CLASSES", "GENERATOR_VERSION", "HU", "SPLIT_DEFAULT_SIZES", "generate",
           "render_volume"]

GENERATOR_VERSION = 1
CLASSES = ("background", "liver", "spleen", "kidney", "tumor")
SPLIT_DEFAULT_SIZES = dict(train=24, val=6)
HU = dict(air=-1000.0, fat=-90.0, body=30.0, liver=65.0, spleen=50.0, kidney=160.0, tumor=25.0)


@dataclass(frozen=True)
class VolumeSpec:
    """The parameters of one split; its hash names the cache folder."""

    split: str = "train"
    num_volumes: int = 24
    size: int = 64
    seed: int = 0
    noise: float = 20.0

    def __post_init__(self):
        if not isinstance(self.split, str) or not self.split.isidentifier():
            raise DataError(f"split must be a name like 'train' or 'val', got {self.split!r}")
        if self.num_volumes < 1:
            raise DataError(f"num_volumes must be >= 1, got {self.num_volumes}")
        if not 16 <= self.size <= 256:
            raise DataError(f"size must be in [16, 256] voxels, got {self.size}")
        if self.noise < 0:
            raise DataError(f"noise must be >= 0 (HU), got {self.noise}")

    def as_dict(self) -> dict:
        return dict(asdict(self), generator_version=GENERATOR_VERSION)

    def variant_hash(self) -> str:
        return hashlib.sha1(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:10]


def _rotation(rng: np.random.Generator, max_angle: float) -> np.ndarray:
    """A rotation matrix about a random axis by up to ``max_angle`` radians."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(-max_angle, max_angle)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _ellipsoid(grid: np.ndarray, centre, radii, rotation=None) -> np.ndarray:
    """Bool mask of the ellipsoid; ``grid`` is [3, D, H, W] coordinates in [-1, 1]."""
    d = grid - np.asarray(centre, np.float32)[:, None, None, None]
    if rotation is not None:
        d = np.einsum("ij,j...->i...", rotation.astype(np.float32), d)
    r = np.asarray(radii, np.float32)[:, None, None, None]
    return ((d / r) ** 2).sum(0) <= 1.0


def _smooth_field(rng: np.random.Generator, size: int, amplitude: float) -> np.ndarray:
    coarse = rng.uniform(-1, 1, (4, 4, 4)).astype(np.float32)
    return ndimage.zoom(coarse, size / 4, order=3, mode="nearest")[:size, :size, :size] * amplitude


def render_volume(rng: np.random.Generator, spec: VolumeSpec) -> tuple[np.ndarray, np.ndarray]:
    """One (int16 image, uint8 label) pair of shape (size,) * 3."""
    s = spec.size
    axis = np.linspace(-1, 1, s, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"))  # z, y, x

    def jitter() -> float:  # per-volume contrast changes
        return float(rng.uniform(-8, 8))

    body_r = np.array([0.95, 0.72, 0.92]) * rng.uniform(0.92, 1.03)
    body = _ellipsoid(grid, rng.uniform(-0.03, 0.03, 3), body_r)
    inner = _ellipsoid(grid, (0, 0, 0), body_r * 0.86) & body
    image = np.full((s, s, s), HU["air"], np.float32)
    image[body] = HU["fat"] + jitter()
    image[inner] = HU["body"] + jitter()
    label = np.zeros((s, s, s), np.uint8)

    def place(cls: int, centre, radii, max_angle=0.5):
        mask = _ellipsoid(grid, centre, radii, _rotation(rng, max_angle)) & inner
        label[mask] = cls
        return mask

    liver = place(1, (rng.uniform(-0.2, 0.15), rng.uniform(-0.15, 0.05),
                               rng.uniform(-0.45, -0.3)),
                  np.array([0.42, 0.32, 0.34]) * rng.uniform(0.85, 1.15, 3))
    place(2, (rng.uniform(-0.3, 0.0), rng.uniform(0.0, 0.2), rng.uniform(0.4, 0.55)),
          np.array([0.24, 0.15, 0.13]) * rng.uniform(0.8, 1.2, 3))
    z = rng.uniform(-0.25, 0.1)
    for side in (-1, 1):
        place(3, (z + rng.uniform(-0.05, 0.05), rng.uniform(0.3, 0.4),
                            side * rng.uniform(0.22, 0.32)),
              np.array([0.17, 0.09, 0.08]) * rng.uniform(0.85, 1.15, 3))
    n_tumors = int(rng.choice([0, 1, 2, 3], p=[0.25, 0.35, 0.25, 0.15]))
    liver_voxels = np.argwhere(label == 1)
    for _ in range(n_tumors if len(liver_voxels) else 0):
        centre = grid[(slice(None),) + tuple(liver_voxels[rng.integers(len(liver_voxels))])]
        mask = _ellipsoid(grid, centre, np.full(3, rng.uniform(0.05, 0.1))) & liver
        label[mask] = 4

    for cls, name in enumerate(CLASSES[1:], start=1):
        image[label == cls] = HU[name] + jitter()
    image = ndimage.gaussian_filter(image, 0.6)  # partial-volume blur at the borders
    image += _smooth_field(rng, s, 10.0) * body
    image += rng.normal(0.0, spec.noise, image.shape).astype(np.float32)
    return np.clip(np.round(image), -1024, 3071).astype(np.int16), label


def generate(spec: VolumeSpec, out_dir: str) -> None:
    """Write every volume of the split, the split list and meta.json into ``out_dir``."""
    for sub in ("images", "labels", "ImageSets"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    names, counts = [], np.zeros(len(CLASSES), np.int64)
    present = np.zeros(len(CLASSES), np.int64)
    for i in range(spec.num_volumes):
        rng = np.random.default_rng([spec.seed, zlib.crc32(spec.split.encode()), i])
        image, label = render_volume(rng, spec)
        name = f"{spec.split}_{i:03d}"
        np.save(os.path.join(out_dir, "images", name + ".npy"), image)
        np.save(os.path.join(out_dir, "labels", name + ".npy"), label)
        names.append(name)
        c = np.bincount(label.ravel(), minlength=len(CLASSES))
        counts += c
        present += c > 0
    with open(os.path.join(out_dir, "ImageSets", f"{spec.split}.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    stats = dict(volumes=spec.num_volumes, classes=list(CLASSES),
                 voxel_share=(counts / counts.sum()).round(6).tolist(),
                 volumes_with_class=present.tolist())
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(dict(parameters=spec.as_dict(), statistics=stats), f, indent=1)

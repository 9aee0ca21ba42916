"""Check a config's datasets before a run: files, image sizes, boxes, label
maps and class counts, summarised in one table (``tools/check_dataset.py``,
and the start of ``tools/train.py``).

Each dataset is built as the run would build it (annotations parsed,
nothing decoded); then every listed image's header is read (PIL opens the
file lazily: size only, no decoding), boxes dropped or clipped at load are
counted by kind, and label maps are read and compared with their images.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

from toolbox.errors import DataError

__all__ = ["DatasetCheck", "check_config_datasets", "check_dataset", "format_checks",
           "num_classes_settings"]

LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


@dataclass
class DatasetCheck:
    """What was checked in one dataset and what was found."""

    where: str
    dataset: str = ""
    num_images: int = 0
    num_boxes: int = 0
    num_classes: int | None = None
    problems: dict[str, list[str]] = field(default_factory=dict)  # kind -> file names
    errors: list[str] = field(default_factory=list)  # fatal for a run

    def add(self, kind: str, name: str) -> None:
        self.problems.setdefault(kind, []).append(name)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.problems


def _image_size(path: str) -> tuple[int, int]:
    from PIL import Image
    with Image.open(path) as img:  # reads the header only
        return img.height, img.width


def _check_images(dataset, report: DatasetCheck, check_files: bool) -> None:
    records = list(getattr(dataset, "data_list", []))
    report.num_images = len(records)
    for r in records:
        report.num_boxes += len(r.get("bboxes", ()))
        path = r.get("img_path")
        if not check_files or path is None:
            continue
        if not os.path.isfile(path):
            report.add("missing image file", path)
            continue
        if str(path).endswith((".nii", ".nii.gz", ".npy", ".npz")):
            continue  # volumes: their loader checks shape against the label map
        try:
            size = _image_size(path)
        except Exception:  # noqa: BLE001 - any decoder error means unreadable
            report.add("unreadable image header", path)
            continue
        expected = (r.get("height"), r.get("width"))
        if None not in expected and tuple(expected) != size:
            report.add(f"image size differs from annotation", path)
        seg = r.get("seg_map_path")
        if seg is not None:
            _check_label_map(dataset, r, size, report)


def _check_label_map(dataset, record: dict, size, report: DatasetCheck) -> None:
    from toolbox.datasets.transforms.load_seg_annotation import check_labels
    path = record["seg_map_path"]
    if not os.path.isfile(path):
        report.add("missing label map", path)
        return
    try:
        seg = dataset.read_labels(record)
        check_labels(seg, dataset.num_classes, dataset.ignore_index, path)
    except DataError:
        report.add("label values out of range", path)
        return
    except Exception:  # noqa: BLE001
        report.add("unreadable label map", path)
        return
    if tuple(seg.shape[:2]) != tuple(size):
        report.add("label map size differs from image", path)


def check_dataset(dataset, where: str, num_classes: Sequence[tuple[str, int]] = (),
                  check_files: bool = True) -> DatasetCheck:
    """Check one built dataset; ``num_classes`` are the model's settings as
    ``(config key, value)`` pairs, each compared with the dataset's classes."""
    inner = dataset
    while hasattr(inner, "dataset") and not hasattr(inner, "data_list"):
        inner = inner.dataset  # RepeatDataset, ClassBalancedDataset...
    report = DatasetCheck(where, type(inner).__name__)
    classes = (getattr(inner, "metainfo", None) or {}).get("classes")
    report.num_classes = len(classes) if classes is not None else None
    _check_images(inner, report, check_files)
    for kind, names in getattr(inner, "annotation_problems", {}).items():
        for name in names:
            report.add(f"box with {kind}", name)
    if report.num_images == 0:
        loaded = getattr(inner, "num_images_loaded", 0)
        why = (f"{loaded} image(s) were loaded but none has a box that is not ignored "
               "(filter_empty_gt=True drops them)" if loaded else
               "the annotation file lists no image")
        report.errors.append(f"0 images left: {why}")
    if report.num_classes is not None:
        for key, value in num_classes:
            if value != report.num_classes:
                report.errors.append(f"{key} is {value} but the dataset has "
                                     f"{report.num_classes} classes")
    return report


def num_classes_settings(cfg, path: str) -> list[tuple[str, int]]:
    """Every ``num_classes`` set in a (nested) config: ``(key path, value)``."""
    found = []
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            where = f"{path}.{key}"
            if key == "num_classes" and isinstance(value, int) and not isinstance(value, bool):
                found.append((where, value))
            else:
                found += num_classes_settings(value, where)
    elif isinstance(cfg, (list, tuple)):
        for i, value in enumerate(cfg):
            found += num_classes_settings(value, f"{path}[{i}]")
    return found


def _model_num_classes(cfg) -> list[tuple[str, int]]:
    return [(k, v) for k, v in num_classes_settings(cfg.get("model", {}), "model")
            if "rpn" not in k]  # an RPN is class-agnostic


def check_config_datasets(cfg, loaders: Sequence[str] = LOADERS, check_files: bool = True
                          ) -> list[DatasetCheck]:
    """Build and check every dataset of ``cfg``'s loaders (one dataset
    config used by several loaders is checked once)."""
    from mmengine.registry import init_default_scope

    from toolbox.registry import DATASETS
    init_default_scope(cfg.get("default_scope", "toolbox"))
    settings = _model_num_classes(cfg)
    reports, seen = [], []
    for loader in loaders:
        ds_cfg = (cfg.get(loader) or {}).get("dataset")
        if ds_cfg is None or ds_cfg in seen:
            continue
        seen.append(ds_cfg)
        where = f"{loader}.dataset"
        try:
            dataset = DATASETS.build(ds_cfg)
        except DataError as exc:
            report = DatasetCheck(where, str(ds_cfg.get("type")))
            report.errors.append(str(exc))
            reports.append(report)
            continue
        reports.append(check_dataset(dataset, where, settings, check_files))
    return reports


def format_checks(reports: Sequence[DatasetCheck], examples: int = 3) -> str:
    """A summary table, then each problem with its count and first files."""
    lines = [f"{'dataset':<28} {'type':<22} {'images':>7} {'boxes':>8} {'classes':>7}  result"]
    for r in reports:
        result = "ok" if r.ok else (f"{len(r.errors)} error(s)" if r.errors else "") + \
            (", " if r.errors and r.problems else "") + \
            (f"{sum(len(v) for v in r.problems.values())} problem(s)" if r.problems else "")
        classes = "-" if r.num_classes is None else str(r.num_classes)
        lines.append(f"{r.where:<28} {r.dataset:<22} {r.num_images:>7} {r.num_boxes:>8} "
                     f"{classes:>7}  {result}")
    for r in reports:
        for error in r.errors:
            lines.append(f"  {r.where}: ERROR: {error}")
        for kind, names in r.problems.items():
            unique = list(dict.fromkeys(names))
            shown = ", ".join(os.path.basename(n) if n else "?" for n in unique[:examples])
            more = f" (+{len(unique) - examples} more files)" if len(unique) > examples else ""
            lines.append(f"  {r.where}: {len(names)} x {kind}: {shown}{more}")
    return "\n".join(lines)

"""The shipped configs, split by task for the e2e config tests."""
from pathlib import Path

from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]


def shipped_configs(task: str) -> list[Path]:
    """Every ``configs/<family>/*.py`` whose model is a segmentor (``task=
    'segmentation'``: it has a ``decode_head``) or a detector (``'detection'``).
    ``configs/reference`` (evaluation-only copies of reference detectors, no
    training set) is tested by tests/reference/ instead."""
    found = []
    for path in sorted((ROOT / "configs").glob("*/*.py")):
        if path.parent.name in ("_base_", "reference"):
            continue
        is_segmentor = "decode_head" in Config.fromfile(str(path)).model
        if is_segmentor == (task == "segmentation"):
            found.append(path)
    return found

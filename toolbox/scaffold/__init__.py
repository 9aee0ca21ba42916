"""``toolbox new-plugin NAME --kind ...``: write a complete plugin package.

The package is installable as is (``pip install -e``) and passes its own
tests right away: a pyproject with the entry point, one component per asked
kind following its hook point's contract, a config that trains them on the
toolbox's synthetic data, and tests built on :mod:`toolbox.testing`.
"""
from __future__ import annotations

import argparse
import keyword
import re
from pathlib import Path
from string import Template

from toolbox.errors import ToolboxError
from toolbox.scaffold import templates as T

__all__ = ["KINDS", "DEFAULT_KINDS", "ScaffoldError", "new_plugin", "add_new_plugin_args"]

#: kind -> (hook point, module, class suffix, template, test template)
_KINDS = {
    "backbone": ("backbones", "backbone", "Net", T.BACKBONE, T.TEST_BACKBONE),
    "neck": ("necks", "neck", "Neck", T.NECK, T.TEST_NECK),
    "head": ("heads", "head", "Head", T.HEAD, T.TEST_HEAD_KIND),
    "loss": ("losses", "loss", "Loss", T.LOSS, T.TEST_LOSS),
    "dataset": ("datasets", "dataset", "Dataset", T.DATASET, T.TEST_DATASET),
    "transform": ("transforms", "transform", "Transform", T.TRANSFORM, T.TEST_TRANSFORM),
    "metric": ("metrics", "metric", "Metric", T.METRIC, T.TEST_METRIC),
}
KINDS = tuple(_KINDS)
DEFAULT_KINDS = ("neck", "loss")


class ScaffoldError(ToolboxError):
    """``toolbox new-plugin`` cannot write the package as asked."""


def _names(name: str) -> dict:
    base = name.strip().lower()
    base = base[len("toolbox-"):] if base.startswith("toolbox-") else base
    base = base[len("toolbox_"):] if base.startswith("toolbox_") else base
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", base):
        raise ScaffoldError(f"plugin name '{name}' must start with a letter and contain only "
                            "letters, digits, '-' and '_' (e.g. 'cbam')")
    ep = base.replace("-", "_")
    if keyword.iskeyword(ep):
        raise ScaffoldError(f"plugin name '{name}' is a Python keyword; choose another")
    prefix = "".join(part.capitalize() for part in re.split(r"[-_]", base) if part)
    return dict(dist=f"toolbox-{base.replace('_', '-')}", pkg=f"toolbox_{ep}", ep=ep,
                Prefix=prefix)


def _config_parts(kinds, n: dict) -> dict:
    p = n["Prefix"]
    backbone = (f'dict(type="{p}Net", widths=(16, 32, 64, 96), out_indices=(1, 2, 3))'
                if "backbone" in kinds else
                'dict(type="MobileNetV3", arch="small", out_indices=(1, 2, 3))')
    neck_type = f"{p}Neck" if "neck" in kinds else "FPN"
    neck = (f'dict(type="{neck_type}", out_channels=32, start_level=0, '
            f'add_extra_convs="on_input", num_outs=4)')
    loss_cls = (f'dict(type="{p}Loss", smoothing=0.0, loss_weight=1.0)' if "loss" in kinds else
                'dict(type="FocalLoss", gamma=2.0, alpha=0.25, loss_weight=1.0)')
    return dict(
        backbone=backbone, neck=neck, loss_cls=loss_cls,
        head=f"{p}Head" if "head" in kinds else "RetinaHead",
        transform=(f'\n    dict(type="{p}Transform", prob=0.2),' if "transform" in kinds else ""),
        dataset=f"{p}Dataset" if "dataset" in kinds else "SyntheticCocoDataset",
        dataset_args=", image_size=image_size" if "dataset" not in kinds else "",
        metric=(f'dict(type="{p}Metric", iou_thr=0.5)' if "metric" in kinds else
                'dict(type="VOCMetric", eval_mode="area")'),
    )


def new_plugin(name: str, kinds=DEFAULT_KINDS, directory: str | Path = ".",
               force: bool = False) -> Path:
    """Write the package ``toolbox-NAME`` under ``directory``; returns its path."""
    from toolbox import __version__
    from toolbox.plugins import API_VERSION
    kinds = list(dict.fromkeys(kinds or DEFAULT_KINDS))
    unknown = [k for k in kinds if k not in _KINDS]
    if unknown:
        raise ScaffoldError(f"unknown kind(s) {', '.join(unknown)}; choose from "
                            f"{', '.join(KINDS)}")
    n = _names(name)
    root = Path(directory) / n["dist"]
    if root.exists() and any(root.iterdir()) and not force:
        raise ScaffoldError(f"{root} exists and is not empty; choose another --dir or "
                            "pass --force to overwrite its files")
    major = int(API_VERSION.split(".")[0])
    classes = {k: f"{n['Prefix']}{_KINDS[k][2]}" for k in kinds}
    summary = ", ".join(f"a {k} ({classes[k]})" for k in kinds)
    table = "\n".join(f"| {_KINDS[k][0]} | `{classes[k]}` | `{n['pkg']}/{_KINDS[k][1]}.py` |"
                      for k in kinds)
    table = "| hook point | name | file |\n| --- | --- | --- |\n" + table
    subs = dict(n, summary=summary, table=table, first=classes[kinds[0]],
                api=f">={API_VERSION},<{major + 1}", toolbox_version=__version__,
                components=repr({_KINDS[k][0]: classes[k] for k in kinds}),
                **_config_parts(kinds, n))

    def write(rel: str, text: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(subs))

    write("pyproject.toml", T.PYPROJECT)
    write("README.md", T.README)
    write(f"{n['pkg']}/__init__.py", T.INIT)
    plugin = T.PLUGIN_HEAD
    for k in kinds:
        point, module, suffix, template, _ = _KINDS[k]
        plugin += Template(T.HOOK).safe_substitute(point=point, module=module,
                                                   cls=classes[k])
        write(f"{n['pkg']}/{module}.py", template)
    write(f"{n['pkg']}/plugin.py", plugin)
    write(f"configs/{n['ep']}_synth.py", T.CONFIG)
    write("tests/conftest.py", T.CONFTEST)
    write(f"tests/test_{n['ep']}.py",
          T.TEST_HEAD + "".join(_KINDS[k][4] for k in kinds) + T.TEST_TAIL)
    return root


def _kinds_arg(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in _KINDS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown kind(s) {', '.join(bad)}; choose from "
                                          f"{', '.join(KINDS)}")
    return kinds


def add_new_plugin_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("name", help="plugin name, e.g. 'cbam': writes toolbox-cbam/ with "
                                     "package toolbox_cbam and entry point 'cbam'")
    parser.add_argument("--kind", action="append", type=_kinds_arg, metavar="KIND[,KIND]",
                        help=f"component(s) to write, repeatable or comma-separated: "
                             f"{', '.join(KINDS)} (default: {','.join(DEFAULT_KINDS)})")
    parser.add_argument("--dir", default=".", help="where to create the package folder")
    parser.add_argument("--force", action="store_true", help="overwrite an existing folder")
    return parser


def main(args) -> int:
    kinds = [k for group in (args.kind or [list(DEFAULT_KINDS)]) for k in group]
    root = new_plugin(args.name, kinds, args.dir, args.force)
    n = _names(args.name)
    print(f"wrote {root}/ ({', '.join(kinds)}). Next:\n"
          f"  pip install -e {root}\n"
          f"  toolbox plugins {n['Prefix']}{_KINDS[kinds[0]][2]}\n"
          f"  python -m pytest {root}/tests\n"
          f"  toolbox train {root}/configs/{n['ep']}_synth.py")
    return 0

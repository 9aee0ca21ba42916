"""Draw the loss and metric curves of a training run to a PNG.

    python tools/plot_logs.py WORK_DIR [--keys loss coco/bbox_mAP ...] [--out curves.png]

Reads the run's ``<timestamp>/vis_data/scalars.json`` (written by mmengine's
``LocalVisBackend``, the default; the newest run in WORK_DIR), or a
``scalars.json`` / json log given directly. Training scalars (one record per
logged iteration) are drawn against the iteration, validation metrics against
the validation step (the epoch for epoch-based runs). Default keys: every
training key starting with ``loss`` and every validation key ending in
``mAP`` (e.g. ``coco/bbox_mAP``, ``pascal_voc/mAP``).
"""
import argparse
import glob
import json
import os.path as osp


def find_scalars(path: str) -> str:
    """The scalars file of ``path`` (a file, or the newest run of a work dir)."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise SystemExit(f"error: '{path}' is neither a work dir nor a scalars/json log file")
    found = sorted(glob.glob(osp.join(path, "*", "vis_data", "scalars.json")))
    if not found:
        raise SystemExit(f"error: no */vis_data/scalars.json in work dir '{path}' (was the run "
                         "logged with mmengine's LocalVisBackend, the default?)")
    return found[-1]


def read_scalars(path: str) -> tuple[dict, dict]:
    """``(train, val)``: ``{key: ([steps], [values])}`` of each record kind."""
    train, val = {}, {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"error: {path} line {number} is not JSON: {exc.msg}") from None
            step = record.get("step", record.get("iter"))
            if step is None:
                continue
            target = train if ("iter" in record or "lr" in record) else val
            for key, value in record.items():
                if key in ("step", "iter", "epoch") or not isinstance(value, (int, float)):
                    continue
                steps, values = target.setdefault(key, ([], []))
                steps.append(step)
                values.append(value)
    return train, val


def plot(train: dict, val: dict, keys, out: str, title: str = "") -> list[str]:
    """Draw ``keys`` (default: losses and mAPs) into ``out``; returns the keys drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if keys:
        unknown = [k for k in keys if k not in train and k not in val]
        if unknown:
            raise SystemExit(f"error: key(s) {unknown} not in the log; available: "
                             f"{sorted(set(train) | set(val))}")
        train_keys = [k for k in keys if k in train]
        val_keys = [k for k in keys if k in val and k not in train]
    else:
        train_keys = [k for k in train if k.startswith("loss")]
        val_keys = [k for k in val if k.endswith("mAP")]
    if not train_keys and not val_keys:
        raise SystemExit(f"error: nothing to draw; available keys: "
                         f"{sorted(set(train) | set(val))}")
    groups = [(g, data, xlabel) for g, data, xlabel in
              ((train_keys, train, "iteration"), (val_keys, val, "validation step (epoch)")) if g]
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for ax, (group, data, xlabel) in zip(axes[0], groups):
        for key in group:
            steps, values = data[key]
            ax.plot(steps, values, label=key, marker="o" if len(steps) < 30 else None,
                    markersize=3)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return train_keys + val_keys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work_dir", help="a training work dir, or a scalars.json / json log")
    parser.add_argument("--keys", nargs="+", help="scalars to draw (default: losses and mAPs)")
    parser.add_argument("--out", help="PNG file (default: <run>/vis_data/curves.png)")
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    path = find_scalars(args.work_dir)
    train, val = read_scalars(path)
    out = args.out or osp.join(osp.dirname(path), "curves.png")
    drawn = plot(train, val, args.keys, out, title=path)
    print(f"drew {', '.join(drawn)} from {path} into {out}")
    return out


if __name__ == "__main__":
    from toolbox.engine.errors_report import run_main
    run_main(main)

"""Backbone speed, side by side with the reference holding identical weights.

For every case in ``benchmarks/backbones/cases_*.py`` (``cases()`` returns
``(label, toolbox_module, reference_module, input_hw)``), time the eval-mode
forward of the toolbox module, the toolbox module with conv+BN folded
(``mmcv.cnn.fuse_conv_bn``) and the reference (torchvision / timm) at batch
1 and 8, interleaved in one run, and print the ratios (toolbox / reference;
<= 1.0 means no slower). Outputs are checked to agree first.

    python benchmarks/bench_backbones.py [--batches 1 8] [--repeats 5] [--only swin]
    python benchmarks/bench_backbones.py --device cuda
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from mmcv.cnn import fuse_conv_bn

HERE = Path(__file__).resolve().parent / "backbones"


def load_cases(only=None):
    for path in sorted(HERE.glob("cases_*.py")):
        if only and not any(o in path.stem for o in only):
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield from module.cases()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_forward(model, x, repeats, device):
    with torch.inference_mode():
        model(x)  # warm-up
        _sync(device)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="substrings of case files to run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    print(f"{'case':34} {'batch':>5} {'toolbox ms':>11} {'fused ms':>9} {'ref ms':>9} "
          f"{'ratio':>6} {'fused':>6}")
    for label, ours, ref, (h, w) in load_cases(args.only):
        ours, ref = ours.to(device).eval(), ref.to(device).eval()
        fused = fuse_conv_bn(copy.deepcopy(ours)).eval()
        x = torch.randn(1, 3, h, w, device=device)
        with torch.inference_mode():
            a, b, c = ours(x), ref(x), fused(x)
        diff = max((p - q).abs().max().item() for p, q in zip(a, b))
        fdiff = max((p - q).abs().max().item() for p, q in zip(a, c))
        for batch in args.batches:
            xb = torch.randn(batch, 3, h, w, device=device)
            t_ours, t_fused, t_ref = [], [], []
            for _ in range(3):  # interleave to share the machine's noise fairly
                t_ours.append(time_forward(ours, xb, args.repeats, device))
                t_fused.append(time_forward(fused, xb, args.repeats, device))
                t_ref.append(time_forward(ref, xb, args.repeats, device))
            o, f, r = (min(t) * 1e3 for t in (t_ours, t_fused, t_ref))
            rows.append(dict(case=label, batch=batch, toolbox_ms=o, fused_ms=f, reference_ms=r,
                             ratio=o / r, fused_ratio=f / r, max_abs_diff=diff,
                             fused_max_abs_diff=fdiff))
            print(f"{label:34} {batch:5d} {o:11.1f} {f:9.1f} {r:9.1f} {o / r:6.2f} {f / r:6.2f}"
                  f"   (diff {diff:.1e}, fused {fdiff:.1e})")
            sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""Where bf16 mixed precision on a CPU loses accuracy: per-part gradient error.

For the same training batches and weights, computes the loss gradients of a
config's model in fp32 and under CPU bf16 autocast (with the toolbox's fp32
heads/losses, as ``--amp`` trains), and reports for each part (backbone, neck,
head) the cosine similarity and relative L2 error of the bf16 gradient
against the fp32 one. As the yardstick of what SGD tolerates anyway, it also
reports the same two numbers between fp32 gradients of two *different*
batches (minibatch noise), and the gap in BatchNorm running statistics after
one forward pass. Appends a section to ``benchmarks/results_amp_precision_cpu.md``.

    OMP_NUM_THREADS=1 python benchmarks/amp_precision.py [CONFIG] [--batches 4]
"""
from __future__ import annotations

import argparse
import copy
import itertools
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "configs/quickstart/retinanet_mobilenetv3_fpn_synth.py"


DEPTH = 1


def part_of(name: str) -> str:
    return ".".join(name.split(".")[:DEPTH])


def gradients(model, data, amp: bool) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    batch = model.data_preprocessor(copy.deepcopy(data), True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        losses = model(**batch, mode="loss")
    loss = sum(v for k, v in losses.items() if "loss" in k)
    loss.backward()
    grads = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            grads.setdefault(part_of(name), []).append(p.grad.detach().flatten().clone())
    return {k: torch.cat(v) for k, v in grads.items()}


def compare(a: dict, b: dict) -> dict[str, tuple[float, float]]:
    out = {}
    for part in a:
        x, y = a[part].double(), b[part].double()
        cos = float(torch.nn.functional.cosine_similarity(x, y, dim=0))
        rel = float((x - y).norm() / y.norm().clamp_min(1e-30))
        out[part] = (cos, rel)
    return out


def bn_stat_gap(model, data) -> float:
    """Largest relative difference of BN running means after one training
    forward pass, bf16 vs fp32, from the same starting statistics."""
    def run(amp):
        m = copy.deepcopy(model).train()
        batch = m.data_preprocessor(copy.deepcopy(data), True)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            m.extract_feat(batch["inputs"])
        return {n: b.clone() for n, b in m.named_buffers() if n.endswith("running_var")}
    a, b = run(True), run(False)
    return max(float(((a[n] - b[n]).abs() / b[n].abs().clamp_min(1e-6)).max()) for n in a)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(DEFAULT))
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--depth", type=int, default=1,
                        help="group parameters by this many name components")
    parser.add_argument("--fp32-modules", nargs="*", default=[],
                        help="submodules run with autocast off (MixedPrecisionHook's "
                             "fp32_modules), e.g. backbone neck")
    parser.add_argument("--checkpoint", help="weights to start from (default: initial)")
    parser.add_argument("--time", action="store_true",
                        help="also time one training step in fp32 and in bf16")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results_amp_precision_cpu.md"))
    args = parser.parse_args()
    global DEPTH
    DEPTH = args.depth
    torch.manual_seed(0)
    cfg = Config.fromfile(args.config)
    from mmengine.runner import Runner
    from toolbox.engine.amp import keep_fp32
    from toolbox.registry import MODELS
    with DefaultScope.overwrite_default_scope("toolbox"):
        model = MODELS.build(cfg.model).train()
        keep_fp32(model)
        if args.checkpoint:
            state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
            model.load_state_dict(state.get("state_dict", state))
        if args.fp32_modules:
            from toolbox.engine.amp import run_in_fp32
            run_in_fp32(model, args.fp32_modules)
        loader_cfg = copy.deepcopy(cfg.train_dataloader)
        loader_cfg["num_workers"] = 0
        loader_cfg.pop("persistent_workers", None)
        loader = Runner.build_dataloader(loader_cfg, seed=0)
        batches = list(itertools.islice(iter(loader), args.batches + 1))
    rows, noise = [], []
    for i in range(args.batches):
        fp32 = gradients(model, batches[i], amp=False)
        bf16 = gradients(model, batches[i], amp=True)
        other = gradients(model, batches[i + 1], amp=False)
        rows.append(compare(bf16, fp32))
        noise.append(compare(other, fp32))
    bn_gap = bn_stat_gap(model, batches[0])
    timing = ""
    if args.time:
        import time
        spent = {}
        for amp in (False, True):
            gradients(model, batches[0], amp)
            start = time.perf_counter()
            for _ in range(2):
                gradients(model, batches[0], amp)
            spent[amp] = (time.perf_counter() - start) / 2
        timing = (f"One forward+backward, batch {len(batches[0]['data_samples'])}, "
                  f"{torch.get_num_threads()} thread(s): fp32 {spent[False]:.2f} s, "
                  f"bf16 {spent[True]:.2f} s ({spent[True] / spent[False]:.1f}x)")
    parts = list(rows[0])
    start = f"weights {Path(args.checkpoint).name}" if args.checkpoint else "initial weights"
    fp32 = f", fp32 modules: {' '.join(args.fp32_modules)}" if args.fp32_modules else ""
    lines = [f"## bf16 autocast vs fp32 gradients ({Path(args.config).name}, CPU, "
             f"{args.batches} batches, {start}{fp32})", "",
             "| part | bf16 vs fp32: cosine | bf16 vs fp32: rel. L2 error | "
             "another batch (fp32): cosine | another batch: rel. L2 |",
             "| --- | --- | --- | --- | --- |"]
    for part in parts:
        mean = lambda rs, j: sum(r[part][j] for r in rs) / len(rs)  # noqa: E731
        lines.append(f"| {part} | {mean(rows, 0):.4f} | {mean(rows, 1):.4f} | "
                     f"{mean(noise, 0):.4f} | {mean(noise, 1):.4f} |")
    lines += ["", f"BatchNorm running_var after one bf16 training pass: largest relative "
              f"difference from fp32 {bn_gap:.4f}", "", timing, ""]
    text = "\n".join(lines)
    print(text)
    with open(args.out, "a") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()

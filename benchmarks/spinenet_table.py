"""Parameters and FLOPs of SpineNet + RetinaNet head beside the paper's table.

    python benchmarks/spinenet_table.py               # meta device: instant, exact counts
    python benchmarks/spinenet_table.py --device cuda --time   # also real forward latency

Counts follow the paper: the backbone plus the RetinaNet head of the authors'
TPU code (per branch ``num_convs`` 3x3 convs with bias, shared across levels,
each followed by a per-level BN; 3x3 class/box predictors; 9 anchors, 91
classes), at the paper's input size. FLOPs are multiply-adds (what the paper
reports); ``torch.utils.flop_counter.FlopCounterMode`` counts 2 per MAC, so
its total is halved. It counts convolutions only (not BN, activations,
additions, pooling or resizing).
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from toolbox.models.backbones.spinenet import SpineNet

# Du et al., CVPR 2020 (RetinaNet table): input, params (M), FLOPs (B MACs).
PAPER = {"49S": (640, 12.0, 33.8), "49": (640, 28.5, 85.4), "96": (1024, 43.0, 265.4),
         "143": (1280, 66.9, 524.4), "190": (1280, 163.6, 1885.0)}
# Head width and convs per branch (tensorflow/tpu configs/spinenet/*_retinanet.yaml).
HEAD = {"49S": (128, 4), "49": (256, 4), "96": (256, 4), "143": (256, 4), "190": (512, 7)}


class PaperRetinaNetHead(nn.Module):
    """RetinaNet head as built by the SpineNet authors' TPU code."""

    def __init__(self, width: int, num_convs: int, num_classes: int = 91,
                 num_anchors: int = 9, num_levels: int = 5):
        super().__init__()
        self.num_convs = num_convs

        def tower():
            convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(num_convs))
            norms = nn.ModuleList(nn.ModuleList(nn.BatchNorm2d(width) for _ in range(num_levels))
                                  for _ in range(num_convs))
            return convs, norms

        self.cls_convs, self.cls_norms = tower()
        self.box_convs, self.box_norms = tower()
        self.cls_pred = nn.Conv2d(width, num_anchors * num_classes, 3, padding=1)
        self.box_pred = nn.Conv2d(width, num_anchors * 4, 3, padding=1)

    def forward(self, feats):
        outputs = []
        for level, feat in enumerate(feats):
            cls, box = feat, feat
            for i in range(self.num_convs):
                cls = torch.relu(self.cls_norms[i][level](self.cls_convs[i](cls)))
                box = torch.relu(self.box_norms[i][level](self.box_convs[i](box)))
            outputs.append((self.cls_pred(cls), self.box_pred(box)))
        return outputs


def measure(arch: str, device: str, timed: bool) -> dict:
    size = PAPER[arch][0]
    with torch.device(device):
        backbone = SpineNet(arch=arch).eval()
        head = PaperRetinaNetHead(*HEAD[arch]).eval()
        images = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            feats = backbone(images)
        backbone_flops = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            head(feats)
        head_flops = counter.get_total_flops()
    row = dict(arch=arch, size=size,
               backbone_params=sum(p.numel() for p in backbone.parameters()),
               head_params=sum(p.numel() for p in head.parameters()),
               backbone_flops=backbone_flops, head_flops=head_flops)
    if timed and device != "meta":
        with torch.no_grad(), torch.autocast(device.split(":")[0], enabled=device != "cpu"):
            for _ in range(3):
                head(backbone(images))
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start, runs = time.perf_counter(), 10
            for _ in range(runs):
                head(backbone(images))
            if device.startswith("cuda"):
                torch.cuda.synchronize()
        row["ms"] = (time.perf_counter() - start) / runs * 1e3
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="meta", help="meta (default), cpu or cuda")
    parser.add_argument("--time", action="store_true", help="also time forward (not on meta)")
    parser.add_argument("--archs", nargs="+", default=list(PAPER))
    args = parser.parse_args()

    header = ("| model | input | backbone params (M) | head params (M) | total params (M) "
              "| paper params (M) | diff | backbone GMACs | head GMACs | total GMACs "
              "| paper FLOPs (B) | diff | FlopCounterMode (GFLOPs) |")
    if args.time:
        header += " fwd ms (AMP) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for arch in args.archs:
        r = measure(arch, args.device, args.time)
        params = (r["backbone_params"] + r["head_params"]) / 1e6
        flops = r["backbone_flops"] + r["head_flops"]
        macs = flops / 2e9
        _, paper_params, paper_flops = PAPER[arch]
        line = (f"| SpineNet-{arch} | {r['size']} | {r['backbone_params'] / 1e6:.2f} "
                f"| {r['head_params'] / 1e6:.2f} | {params:.2f} | {paper_params} "
                f"| {100 * (params / paper_params - 1):+.1f}% | {r['backbone_flops'] / 2e9:.1f} "
                f"| {r['head_flops'] / 2e9:.1f} | {macs:.1f} | {paper_flops} "
                f"| {100 * (macs / paper_flops - 1):+.1f}% | {flops / 1e9:.1f} |")
        if "ms" in r:
            line += f" {r['ms']:.1f} |"
        print(line, flush=True)


if __name__ == "__main__":
    main()

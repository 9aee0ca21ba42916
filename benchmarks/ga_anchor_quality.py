"""How good are a trained GA-RetinaNet's guided anchors, against RetinaNet's fixed ones?

For every ground-truth box of the val split: the best IoU of (a) the
guided anchors that survive the location filter at each ``loc_filter_thr``,
(b) all guided anchors (every cell, no filter) and (c) the fixed anchors of
the RetinaNet config (9 per cell), plus how many anchors each keeps. The
paper's claim is that guided anchors cover the boxes better with fewer
anchors; a GA detector behind its RetinaNet baseline has its reason here
(anchors) or downstream (classification / regression on adapted features)::

    python benchmarks/ga_anchor_quality.py GA_CONFIG GA_CHECKPOINT [--retina-config CFG]
        [--thresholds 0.0 0.01 0.05 0.1] [--images 250]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor
from torchvision.ops import box_iou

ROOT = Path(__file__).resolve().parents[1]
RETINA = "configs/quickstart/retinanet_mobilenetv3_fpn_synth.py"


def _model(config: str, checkpoint: str | None):
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint
    import toolbox  # noqa: F401
    from toolbox.registry import MODELS
    cfg = Config.fromfile(str(config))
    model = MODELS.build(cfg.model)
    model.init_weights()
    if checkpoint and checkpoint != "none":
        load_checkpoint(model, checkpoint, map_location="cpu")
    return cfg, model.eval()


def _val_loader(cfg, images: int):
    from mmengine.runner import Runner
    from toolbox.registry import DATASETS
    loader = dict(cfg.val_dataloader, num_workers=0, persistent_workers=False,
                  dataset=DATASETS.build(cfg.val_dataloader.dataset))
    out = []
    for batch in Runner.build_dataloader(loader, seed=0):
        out.append(batch)
        if sum(len(b["data_samples"]) for b in out) >= images:
            break
    return out


def _summary(best: list[Tensor], counts: list[int]) -> str:
    best = torch.cat(best)
    return (f"{float(best.mean()):.3f} | {float((best >= 0.5).float().mean()):.3f} | "
            f"{float((best >= 0.7).float().mean()):.3f} | {sum(counts) / len(counts):.0f}")



@torch.no_grad()
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint", help="'none': the untrained model (a smoke run)")
    parser.add_argument("--retina-config", default=str(ROOT / RETINA))
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 0.01, 0.05, 0.1])
    parser.add_argument("--images", type=int, default=250)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg, model = _model(args.config, args.checkpoint)
    _, retina = _model(args.retina_config, None)
    head, guidance = model.bbox_head, model.bbox_head.guidance
    rows = {f"guided, loc_filter_thr {t}": ([], []) for t in args.thresholds}
    rows["guided, every cell"] = ([], [])
    rows["RetinaNet fixed anchors (9 per cell)"] = ([], [])
    for batch in _val_loader(cfg, args.images):
        data = model.data_preprocessor(batch, training=False)
        _, _, shape_preds, loc_preds = head(model.neck(model.backbone(data["inputs"])))
        anchors = torch.cat(guidance.guided_anchors(shape_preds), dim=1)  # [B, N, 4]
        probs = torch.cat([p.sigmoid().flatten(1) for p in loc_preds], dim=1)
        sizes = [tuple(p.shape[-2:]) for p in loc_preds]
        fixed = torch.cat(retina.bbox_head.prior_generator.grid_anchors(sizes))
        for i, sample in enumerate(data["data_samples"]):
            gt = sample.gt_instances.bboxes
            gt = torch.as_tensor(gt, dtype=torch.float32).reshape(-1, 4)
            if not gt.numel():
                continue
            valid = guidance.valid_cells(sizes, sample.metainfo.get("img_shape"), gt.device)
            for t in args.thresholds:
                keep = valid & (probs[i] > t)
                iou = box_iou(gt, anchors[i][keep])
                rows[f"guided, loc_filter_thr {t}"][0].append(
                    iou.max(dim=1).values if iou.numel() else gt.new_zeros(len(gt)))
                rows[f"guided, loc_filter_thr {t}"][1].append(int(keep.sum()))
            rows["guided, every cell"][0].append(box_iou(gt, anchors[i][valid]).max(dim=1).values)
            rows["guided, every cell"][1].append(int(valid.sum()))
            rows["RetinaNet fixed anchors (9 per cell)"][0].append(
                box_iou(gt, fixed).max(dim=1).values)
            rows["RetinaNet fixed anchors (9 per cell)"][1].append(fixed.shape[0])
    print("| anchors | mean best IoU per gt | gt with IoU >= 0.5 | >= 0.7 | anchors per image |")
    print("|---|---|---|---|---|")
    for name, (best, counts) in rows.items():
        print(f"| {name} | {_summary(best, counts)} |")


if __name__ == "__main__":
    main()

"""DETR on a CPU: transformer speed against torch.nn.Transformer layers, and
the small variant's accuracy next to the RetinaNet quickstart.

* ``speed``: DETR-R50 (91 classes, 100 queries) forward + backward at batch
  1, 320x320, one thread. The reference is the same model whose transformer
  is rebuilt from ``torch.nn.TransformerEncoderLayer`` /
  ``TransformerDecoderLayer`` (post-norm, positional encodings added to the
  attention queries and keys by overriding their attention blocks) and
  loaded with the same weights; outputs are compared before timing.
* ``train``: ``configs/detr/detr_small_synth.py`` and
  ``configs/quickstart/retinanet_mobilenetv3_fpn_synth.py`` trained for the
  same number of iterations (batch 8, each config's optimiser, warm-up then
  cosine decay over the budget), then COCO AP / AP50 on the synthetic val
  split.

    python benchmarks/detr.py speed [--repeats 5]
    python benchmarks/detr.py train [--iters 400] [--only detr retinanet]
    python benchmarks/detr.py eval --only detr --iters 400 --checkpoint work_dirs/.../iter_200.pth
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from mmengine.config import Config
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = dict(detr=ROOT / "configs" / "detr" / "detr_small_synth.py",
               retinanet=ROOT / "configs" / "quickstart" / "retinanet_mobilenetv3_fpn_synth.py")


# --------------------------------------------------------------- reference layers
class RefEncoderLayer(nn.TransformerEncoderLayer):
    """``nn.TransformerEncoderLayer`` with ``pos`` added to q and k."""
    pos = None

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal=False):
        q = k = x + self.pos
        x = self.self_attn(q, k, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           need_weights=False)[0]
        return self.dropout1(x)


class RefDecoderLayer(nn.TransformerDecoderLayer):
    """``nn.TransformerDecoderLayer`` with ``query_pos`` / ``pos`` added to q and k."""
    pos = query_pos = None

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal=False):
        q = k = x + self.query_pos
        x = self.self_attn(q, k, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           need_weights=False)[0]
        return self.dropout1(x)

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal=False):
        x = self.multihead_attn(x + self.query_pos, mem + self.pos, mem, attn_mask=attn_mask,
                                key_padding_mask=key_padding_mask, need_weights=False)[0]
        return self.dropout2(x)


class RefTransformer(nn.Module):
    """DETR's transformer from ``torch.nn`` layers (same parameter names)."""

    def __init__(self, d_model=256, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                 dim_feedforward=2048, dropout=0.1):
        super().__init__()
        self.d_model = d_model
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(
            RefEncoderLayer(d_model, nhead, dim_feedforward, dropout)
            for _ in range(num_encoder_layers))
        self.decoder = nn.Module()
        self.decoder.layers = nn.ModuleList(
            RefDecoderLayer(d_model, nhead, dim_feedforward, dropout)
            for _ in range(num_decoder_layers))
        self.decoder.norm = nn.LayerNorm(d_model)

    def forward(self, src, mask, query_embed, pos):
        batch, channels, h, w = src.shape
        src = src.flatten(2).permute(2, 0, 1)
        pos = pos.flatten(2).permute(2, 0, 1)
        query_pos = query_embed[:, None, :].expand(-1, batch, -1)
        mask = mask.flatten(1)
        for layer in self.encoder.layers:
            layer.pos = pos
            src = layer(src, src_key_padding_mask=mask)
        tgt, outs = torch.zeros_like(query_pos), []
        for layer in self.decoder.layers:
            layer.pos, layer.query_pos = pos, query_pos
            tgt = layer(tgt, src, memory_key_padding_mask=mask)
            outs.append(self.decoder.norm(tgt))
        memory = src.permute(1, 2, 0).reshape(batch, channels, h, w)
        return torch.stack(outs).transpose(1, 2), memory


def _time_pair(fn_a, fn_b, repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of two callables, run alternately so that
    load on a shared machine hits both alike."""
    fn_a(), fn_b()  # warm-up
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(times_a), min(times_b)


def bench_speed(repeats: int, size: int = 320) -> dict:
    from toolbox.registry import MODELS
    from toolbox.structures import DetDataSample
    from mmengine.structures import InstanceData
    torch.manual_seed(0)
    cfg = Config.fromfile(str(CONFIGS["detr"].parent / "detr_r50_synth.py"))
    cfg.model.bbox_head.num_classes = 91
    ours = MODELS.build(cfg.model)
    ref = MODELS.build(cfg.model)
    ref.bbox_head.transformer = RefTransformer()
    missing = ref.load_state_dict(ours.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    image = torch.randn(1, 3, size, size)

    def sample():
        s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size)))
        s.gt_instances = InstanceData(bboxes=torch.tensor([[20., 30., 200., 250.],
                                                           [100., 50., 300., 120.]]),
                                      labels=torch.tensor([3, 17]))
        return [s]

    ours.eval(), ref.eval()
    with torch.no_grad():
        a = ours(image, sample(), mode="tensor")
        b = ref(image, sample(), mode="tensor")
    diff = max((a[0] - b[0]).abs().max().item(), (a[1] - b[1]).abs().max().item())
    ours.train(), ref.train()
    torch.manual_seed(1)
    loss_a = sum(ours(image, sample(), mode="loss").values())
    torch.manual_seed(1)
    loss_b = sum(ref(image, sample(), mode="loss").values())

    def step(model):
        def run():
            model.zero_grad(set_to_none=True)
            sum(model(image, sample(), mode="loss").values()).backward()
        return run

    t_ours, t_ref = _time_pair(step(ours), step(ref), repeats)
    # the transformer alone (what differs), same inputs
    feat = torch.randn(1, 256, size // 32, size // 32)
    mask = torch.zeros(1, size // 32, size // 32, dtype=torch.bool)
    pos = ours.bbox_head.positional_encoding(mask)
    query = ours.bbox_head.query_embed.weight

    def tstep(tr):
        def run():
            tr.zero_grad(set_to_none=True)
            tr(feat, mask, query, pos)[0].sum().backward()
        return run

    tt_ours, tt_ref = _time_pair(tstep(ours.bbox_head.transformer),
                                 tstep(ref.bbox_head.transformer), repeats * 4)
    return dict(size=size, eval_max_abs_diff=diff, train_loss_ours=loss_a.item(),
                train_loss_ref=loss_b.item(), model_s_ours=t_ours, model_s_ref=t_ref,
                model_ratio=t_ours / t_ref, transformer_s_ours=tt_ours,
                transformer_s_ref=tt_ref, transformer_ratio=tt_ours / tt_ref,
                threads=torch.get_num_threads())


# ------------------------------------------------------------------------ train
def _prepare(name: str, iters: int, work_root: Path, seed: int = 0) -> Config:
    """The config ``name`` on an ``iters``-iteration budget (batch 8, warm-up
    then cosine decay to 1% of the config's learning rate)."""
    cfg = Config.fromfile(str(CONFIGS[name]))
    cfg.work_dir = str(work_root / name)
    cfg.randomness = dict(seed=seed)
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=iters,
                         val_begin=iters + 1)  # evaluated once, after training
    warmup = min(100, iters // 10)
    cfg.param_scheduler = [
        dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=warmup),
        dict(type="CosineAnnealingLR", by_epoch=False, begin=warmup, end=iters,
             T_max=iters - warmup, eta_min_ratio=0.01)]
    for split in ("train", "val"):
        loader = cfg[f"{split}_dataloader"]
        loader.update(num_workers=0, persistent_workers=False, batch_size=8)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.custom_hooks = [h for h in cfg.custom_hooks if h["type"] != "ProgressBarHook"]
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=max(1, iters // 4),
                                        by_epoch=False)
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=50)
    cfg.log_processor = dict(type="LogProcessor", window_size=50, by_epoch=False)
    cfg.val_evaluator = [dict(type="CocoMetric")]
    cfg.log_level = "INFO"
    return cfg


def train_variant(name: str, iters: int, work_root: Path) -> dict:
    from toolbox.engine.runner import build_runner
    cfg = _prepare(name, iters, work_root)
    start = time.time()
    runner = build_runner(cfg)
    runner.train()
    train_min = (time.time() - start) / 60
    metrics = runner.val_loop.run()
    return dict(config=str(CONFIGS[name].relative_to(ROOT)), iters=iters, batch_size=8,
                AP=metrics["coco/bbox_mAP"], AP50=metrics["coco/bbox_mAP_50"],
                train_minutes=train_min, total_minutes=(time.time() - start) / 60)


def evaluate_checkpoint(name: str, iters: int, checkpoint: str, work_root: Path) -> dict:
    """COCO AP of an intermediate checkpoint of a ``train`` run."""
    from toolbox.engine.runner import build_runner
    cfg = _prepare(name, iters, work_root / "eval")
    cfg.load_from = checkpoint
    metrics = build_runner(cfg).val()
    return dict(config=str(CONFIGS[name].relative_to(ROOT)), schedule_iters=iters,
                checkpoint=checkpoint, AP=metrics["coco/bbox_mAP"],
                AP50=metrics["coco/bbox_mAP_50"])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("speed", "train", "eval"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--only", nargs="*", default=list(CONFIGS))
    parser.add_argument("--work-dir", default="work_dirs/bench_detr")
    parser.add_argument("--checkpoint", help="eval: checkpoint of a train run (one --only name)")
    parser.add_argument("--out", default=None, help="append the JSON result to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.part == "speed":
        results = [bench_speed(args.repeats)]
    elif args.part == "train":
        results = [train_variant(n, args.iters, Path(args.work_dir)) for n in args.only]
    else:
        results = [evaluate_checkpoint(args.only[0], args.iters, args.checkpoint,
                                       Path(args.work_dir))]
    for r in results:
        print(json.dumps(r))
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()

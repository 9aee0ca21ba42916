"""Parameter counts and FLOPs of a config's model.

    python tools/analyze.py CONFIG [--shape H W] [--checkpoint CKPT]

Parameters: total and trainable, for the whole model and per top-level part
(backbone, neck, bbox_head, ...). FLOPs: ``torch.utils.flop_counter.
FlopCounterMode`` on one ``[1, 3, H, W]`` input through ``mode='tensor'``
(backbone + neck + head; decoding and NMS excluded). One multiply-add counts
as 2 FLOPs, so GMACs = GFLOPs / 2. Operations the counter does not know
(activations, normalisation, element-wise adds) are not counted.
"""
import argparse
import os.path as osp

import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--shape", nargs=2, type=int, default=None, metavar=("H", "W"),
                        help="input size for the FLOPs (default: the config's image_size, "
                             "else 256 256)")
    parser.add_argument("--checkpoint", help="load these weights first (optional)")
    return parser.parse_args(argv)


def count_parameters(model: torch.nn.Module) -> dict:
    """``{'total', 'trainable', 'parts': {name: (total, trainable)}}``."""
    def counts(module):
        params = list(module.parameters())
        return (sum(p.numel() for p in params),
                sum(p.numel() for p in params if p.requires_grad))
    total, trainable = counts(model)
    parts = {name: counts(child) for name, child in model.named_children()}
    return dict(total=total, trainable=trainable,
                parts={k: v for k, v in parts.items() if v[0] > 0})


def count_flops(model: torch.nn.Module, shape) -> dict:
    """``{'total': flops, 'parts': {top-level name: flops}}`` for one image."""
    from torch.utils.flop_counter import FlopCounterMode
    divisor = int(getattr(model, "size_divisor", 1) or 1)
    h, w = (-(-int(s) // divisor) * divisor for s in shape)
    counter = FlopCounterMode(display=False, depth=2)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, h, w), mode="tensor")
    prefix = type(model).__name__ + "."
    parts = {}
    for name, ops in counter.get_flop_counts().items():
        if name.startswith(prefix) and name.count(".") == 1:
            parts[name[len(prefix):]] = sum(ops.values())
    return dict(total=counter.get_total_flops(), parts=parts, input_shape=(h, w))


def main(argv=None) -> dict:
    from toolbox.engine.errors_report import load_config
    from mmengine.registry import init_default_scope

    from toolbox.registry import MODELS
    args = parse_args(argv)
    if not osp.isfile(args.config):
        raise SystemExit(f"error: config file '{args.config}' does not exist")
    cfg = load_config(args.config)  # a syntax error names file and line
    init_default_scope(cfg.get("default_scope", "toolbox"))
    model = MODELS.build(cfg.model).eval()
    if args.checkpoint:
        from toolbox.apis.inferencer import load_weights
        load_weights(model, args.checkpoint, args.config)
    shape = args.shape or (cfg.get("image_size", 256),) * 2
    params = count_parameters(model)
    flops = count_flops(model, shape)
    print(f"model: {type(model).__name__} from {args.config}")
    print(f"{'part':<20}{'params':>14}{'trainable':>14}{'GFLOPs':>10}")
    for name, (total, trainable) in params["parts"].items():
        gflops = flops["parts"].get(name)
        print(f"{name:<20}{total:>14,}{trainable:>14,}"
              f"{'' if gflops is None else f'{gflops / 1e9:.3f}':>10}")
    print(f"{'total':<20}{params['total']:>14,}{params['trainable']:>14,}"
          f"{flops['total'] / 1e9:>10.3f}")
    h, w = flops["input_shape"]
    print(f"FLOPs for one {h}x{w} image (backbone + neck + head, no NMS): "
          f"{flops['total'] / 1e9:.3f} GFLOPs = {flops['total'] / 2e9:.3f} GMACs")
    return dict(params=params, flops=flops)


if __name__ == "__main__":
    from toolbox.engine.errors_report import run_main
    run_main(main)

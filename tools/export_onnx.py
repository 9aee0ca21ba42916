"""Export a detector to ONNX and check it against PyTorch with onnxruntime.

    python tools/export_onnx.py CONFIG CHECKPOINT [--out model.onnx] [--shape H W]
                                [--image IMG] [--dynamo]

The graph holds backbone + neck + head and returns the raw per-level class
logits and box deltas (``mode='tensor'``); decoding and NMS stay in Python:
``toolbox.apis.onnx_export.postprocess_outputs`` runs them on the ONNX
outputs (its module docstring spells the steps out). The check runs one
image (``--image``, else a random one) through both, and prints the largest
absolute difference of the raw outputs and of the final boxes.

The TorchScript exporter is the default: it takes seconds, matches PyTorch to
~1e-5 and supports dynamic height/width via ``dynamic_axes``; ``--dynamo``
uses ``torch.export`` + onnxscript instead (opset >= 18, weights in
``FILE.data`` beside the graph; about 40x slower to export here).
"""
import argparse
import os.path as osp
import sys
import time

import numpy as np
import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--out", help="ONNX file (default: CHECKPOINT with .onnx)")
    parser.add_argument("--shape", nargs=2, type=int, default=(256, 256), metavar=("H", "W"),
                        help="input size traced (default 256 256; H/W stay dynamic)")
    parser.add_argument("--image", help="image for the onnxruntime check (default: random)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--dynamo", action="store_true", help="use the torch.export exporter")
    parser.add_argument("--static", action="store_true", help="fixed input shape")
    parser.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE",
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    import onnxruntime as ort

    from toolbox.apis.inferencer import CheckpointMismatchError, Inferencer, read_image
    from toolbox.apis.onnx_export import (TensorOutputs, export_onnx, postprocess_outputs,
                                          preprocess)
    args = parse_args(argv)
    for what, path in (("config", args.config), ("checkpoint", args.checkpoint)):
        if not osp.isfile(path):
            raise SystemExit(f"error: {what} file '{path}' does not exist")
    try:
        inferencer = Inferencer(args.config, args.checkpoint)
    except CheckpointMismatchError as exc:
        raise SystemExit(f"error: {exc}") from None
    model = inferencer.model.eval()
    out = args.out or osp.splitext(args.checkpoint)[0] + ".onnx"
    start = time.perf_counter()
    names = export_onnx(model, out, args.shape, opset=args.opset, dynamo=args.dynamo,
                        dynamic=not args.static)
    export_s = time.perf_counter() - start

    if args.image:
        image = read_image(args.image)
    else:
        h, w = args.shape if args.static else (args.shape[0] // 2, args.shape[1])  # another size
        image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    divisor = int(getattr(model, "size_divisor", 32) or 32)
    images, meta = preprocess(image, inferencer.array_pipeline, divisor, model.data_preprocessor)
    if args.static and images.shape[2:] != tuple(args.shape):
        raise SystemExit(f"error: --static model takes {tuple(args.shape)} inputs but the "
                         f"pipeline gives {images.shape[2:]}; drop --static or change --shape")
    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"images": images})
    with torch.no_grad():
        torch_out = [t.numpy() for t in TensorOutputs(model)(torch.from_numpy(images))]
    raw_diff = max(float(np.abs(a - b).max()) for a, b in zip(onnx_out, torch_out))
    head = model.bbox_head
    dets_onnx = postprocess_outputs(onnx_out, head, [meta])[0]
    dets_torch = postprocess_outputs(torch_out, head, [meta])[0]
    same = len(dets_onnx) == len(dets_torch)
    box_diff = (float((dets_onnx.bboxes - dets_torch.bboxes).abs().max())
                if same and len(dets_onnx) else 0.0)
    external = out + ".data"  # the dynamo exporter keeps the weights beside the graph
    size_mb = (osp.getsize(out) + (osp.getsize(external) if osp.isfile(external) else 0)) / 2 ** 20
    beside = f" with {external}" if osp.isfile(external) else ""
    print(f"exported {out} ({size_mb:.2f} MB{beside}, {len(names)} outputs: "
          f"{', '.join(names)}) in "
          f"{export_s:.1f} s with the {'dynamo' if args.dynamo else 'TorchScript'} exporter")
    print(f"onnxruntime vs PyTorch on a {image.shape[0]}x{image.shape[1]} image "
          f"(input {images.shape[2]}x{images.shape[3]}): max abs diff of raw outputs "
          f"{raw_diff:.3g}; detections {len(dets_onnx)} vs {len(dets_torch)}, max abs box diff "
          f"{box_diff:.3g}")
    if not same:
        print("warning: ONNX and PyTorch keep different numbers of detections "
              "(scores at the threshold?)", file=sys.stderr)
    return dict(path=out, raw_max_abs_diff=raw_diff, box_max_abs_diff=box_diff,
                num_dets=(len(dets_onnx), len(dets_torch)), output_names=names)


if __name__ == "__main__":
    from toolbox.engine.errors_report import run_main
    run_main(main)

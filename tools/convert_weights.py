"""Convert reference weights into a toolbox checkpoint.

    python tools/convert_weights.py SRC DST [--format F] [--config CONFIG]

SRC is a torchvision detection state dict (e.g. retinanet_resnet50_fpn_coco-eeacb38b.pth),
the DETR authors' checkpoint (detr-r50-e632da11.pth), an HF DetrForObjectDetection state
dict, a torchvision / timm classification state dict (--format backbone --config CFG) or
MONAI's UNETR. The layout is detected unless --format is given; the result is checked
against the model of the layout's reference config (or --config) and written to DST.
"""
import argparse
import sys

from toolbox.convert import LAYOUTS, ConversionError, convert_checkpoint


def main(argv=None) -> int:
    formats = "\n".join(f"  {x.name:<26} {x.description}" for x in LAYOUTS)
    parser = argparse.ArgumentParser(description=__doc__, epilog="formats:\n" + formats,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="the reference checkpoint (.pth)")
    parser.add_argument("dst", help="the toolbox checkpoint to write")
    parser.add_argument("--format", choices=[x.name for x in LAYOUTS],
                        help="the source layout (default: detected from its keys)")
    parser.add_argument("--config", help="check against (and, for 'backbone', convert "
                        "through) this config's model instead of the layout's reference config")
    args = parser.parse_args(argv)
    try:
        meta = convert_checkpoint(args.src, args.dst, args.format, args.config)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    checked = meta["checked_against"] or "no config (keys not checked against a model)"
    print(f"{args.src} ({meta['format']}, {meta['num_tensors']} tensors) -> {args.dst}; "
          f"checked against {checked}")
    return 0


if __name__ == "__main__":
    from toolbox.engine.errors_report import run_main
    sys.exit(run_main(main))

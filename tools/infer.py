"""Detect objects in images: ``python tools/infer.py CONFIG CHECKPOINT INPUT [--out DIR]``.

INPUT is an image, a folder of images or a quoted glob ('photos/*.jpg'). Each
image is written to DIR with its detections drawn, next to a JSON of the
detections (boxes in original pixels, class names, scores).
"""
import argparse

from toolbox.engine.errors_report import run_main
from toolbox.apis.image_inference import run_inference as infer
from toolbox.engine.launch import add_infer_args


def main(argv=None):
    parser = add_infer_args(argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter))
    return run_main(lambda a: infer(parser.parse_args(a)), argv)


if __name__ == "__main__":
    main()

"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [--show-dir DIR]``.

``--show-dir DIR`` also saves every test image with its ground truth (left)
and predictions (right) drawn, as ``DIR/<image name>.png``.
"""
import argparse

from toolbox.engine.errors_report import run_main
from toolbox.engine.launch import add_test_args, test


def main(argv=None):
    parser = add_test_args(argparse.ArgumentParser(description=__doc__))
    return run_main(lambda a: test(parser.parse_args(a)), argv)


if __name__ == "__main__":
    main()

"""Train a model: ``python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]]``.

The toolbox's errors (config, data, checkpoint, plugin) are printed as one short
block and exit with status 2; ``--debug`` shows the traceback instead.
"""
import argparse

from toolbox.engine.errors_report import run_main
from toolbox.engine.launch import add_train_args, train


def main(argv=None):
    parser = add_train_args(argparse.ArgumentParser(description=__doc__))
    return run_main(lambda a: train(parser.parse_args(a)), argv)


if __name__ == "__main__":
    main()

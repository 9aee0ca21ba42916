"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT``."""
import argparse

from toolbox.engine.launch import add_test_args, test


def main():
    parser = add_test_args(argparse.ArgumentParser(description=__doc__))
    test(parser.parse_args())


if __name__ == "__main__":
    main()

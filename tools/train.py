"""Train a model: ``python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]]``."""
import argparse

from toolbox.engine.launch import add_train_args, train


def main():
    parser = add_train_args(argparse.ArgumentParser(description=__doc__))
    train(parser.parse_args())


if __name__ == "__main__":
    main()

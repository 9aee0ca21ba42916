"""Check a config's datasets before training: ``python tools/check_dataset.py CONFIG``.

Builds every dataset of the train/val/test loaders as a run would, then checks that each
listed image exists and its header has the annotated size, counts boxes that were dropped
(non-finite, no area) or clipped at load, checks label maps (present, same size, values in
range), empty splits and every model ``num_classes`` against the dataset's classes. Prints
one table; exits 1 when a dataset has an error (a run would fail), 0 otherwise.
"""
import argparse
import sys
import time

from toolbox.datasets.check import check_config_datasets, format_checks
from toolbox.engine.errors_report import CfgOptionsAction, load_config
from toolbox.errors import ToolboxError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--no-files", action="store_true",
                        help="check the annotations only (no image headers, no label maps)")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction, metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)  # a syntax error names file and line
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        start = time.perf_counter()
        reports = check_config_datasets(cfg, check_files=not args.no_files)
    except ToolboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_checks(reports))
    print(f"checked in {time.perf_counter() - start:.1f} s")
    return 1 if any(r.errors for r in reports) else 0


if __name__ == "__main__":
    from toolbox.engine.errors_report import run_main
    sys.exit(run_main(main))

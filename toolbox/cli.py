"""The ``toolbox`` command: ``plugins``, ``train``, ``test`` and ``infer``."""
from __future__ import annotations

import argparse
import json
import sys


def _plugins(args) -> int:
    from toolbox.hookspecs import HOOK_POINTS
    from toolbox.plugins import ensure_loaded, loaded_manager
    table = ensure_loaded(strict=args.strict or None)
    manager = loaded_manager()
    rows = {point: [dict(name=r.name, distribution=r.provider.distribution,
                         version=r.provider.version, plugin=r.provider.plugin,
                         **({"replaces": str(r.replaced)} if r.replaced else {}))
                    for r in sorted(table[point].values(), key=lambda r: r.name)]
            for point in HOOK_POINTS}
    failures = [dict(plugin=p.plugin, distribution=p.distribution, version=p.version,
                     error=f"{type(e).__name__}: {e}") for p, e in manager.failures]
    if args.json:
        json.dump(dict(hook_points=rows, failed=failures,
                       plugins=[vars(p) for p in manager.plugins]), sys.stdout, indent=2)
        print()
        return 0
    print("plugins: " + ", ".join(f"{p.plugin} ({p.distribution} {p.version})"
                                  for p in manager.plugins))
    for point in HOOK_POINTS:
        if args.hook_point and point != args.hook_point:
            continue
        print(f"\n{point} ({len(rows[point])})")
        width = max([len(r["name"]) for r in rows[point]] + [4])
        for r in rows[point]:
            extra = f"  [replaces {r['replaces']}]" if "replaces" in r else ""
            print(f"  {r['name']:<{width}}  {r['distribution']} {r['version']}{extra}")
    for f in failures:
        print(f"\nFAILED to load plugin '{f['plugin']}' ({f['distribution']} "
              f"{f['version']}): {f['error']}")
    return 0


def main(argv=None) -> int:
    from toolbox import __version__
    parser = argparse.ArgumentParser(prog="toolbox", description="toolbox: detection and "
                                     "segmentation on plugins")
    parser.add_argument("--version", action="version", version=f"toolbox {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plugins", help="list hook points, components and their distributions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--strict", action="store_true", help="fail if any plugin fails to load")
    p.add_argument("hook_point", nargs="?", help="show only this hook point")
    from toolbox.engine.launch import add_infer_args, add_test_args, add_train_args
    add_train_args(sub.add_parser("train", help="train a model from a config"))
    add_test_args(sub.add_parser("test", help="evaluate a checkpoint"))
    add_infer_args(sub.add_parser("infer", help="detect objects in images, draw them and "
                                  "write the detections as JSON"))
    args = parser.parse_args(argv)
    if args.command == "plugins":
        return _plugins(args)
    from toolbox.engine import launch
    if args.command == "train":
        launch.train(args)
    elif args.command == "infer":
        launch.infer(args)
    else:
        launch.test(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``toolbox`` command: ``plugins``, ``new-plugin``, ``train``, ``test`` and ``infer``."""
from __future__ import annotations

import argparse
import json
import sys


def _status(manager, point_filter=None) -> dict:
    """What the listing says besides the table: plugins loaded, failed,
    left out by the environment, and name clashes."""
    failed = [dict(plugin=f.provider.plugin, distribution=f.provider.distribution,
                   version=f.provider.version, what=f.what,
                   error=f"{type(f.error).__name__}: {f.error}") for f in manager.failures]
    bad = {f["plugin"] for f in failed}
    skipped = [dict(plugin=p.plugin, distribution=p.distribution, version=p.version,
                    reason=reason) for p, reason in manager.skipped]
    clashes = [dict(hook_point=c.point, name=c.name, message=c.message(),
                    distributions=[f"{p.distribution} {p.version}" for p in c.providers])
               for point, by_name in manager.conflicts.items()
               if point_filter in (None, point) for c in by_name.values()]
    return dict(plugins=[vars(p) for p in manager.plugins if p.plugin not in bad],
                failed=failed, skipped=skipped, clashes=clashes)


def _component_info(name: str):
    """(hook point, Registration) of a component name, or None."""
    from toolbox.hookspecs import HOOK_POINTS
    from toolbox.plugins import ensure_loaded
    table = ensure_loaded()
    for point in HOOK_POINTS:
        if name in table[point]:
            return point, table[point][name]
    lowered = {n.lower(): (p, n) for p in HOOK_POINTS for n in table[p]}
    if name.lower() in lowered:
        point, real = lowered[name.lower()]
        return point, table[point][real]
    return None


def _describe(point: str, reg) -> dict:
    import inspect
    comp = reg.component
    target = comp.__init__ if inspect.isclass(comp) else comp
    try:
        sig = inspect.signature(target)
        params = [p for p in sig.parameters.values() if p.name != "self"]
        signature = f"{reg.name}({', '.join(str(p) for p in params)})"
        arguments = [dict(name=p.name,
                          default=None if p.default is p.empty else repr(p.default),
                          required=p.default is p.empty and p.kind in
                          (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY),
                          annotation=None if p.annotation is p.empty else
                          (p.annotation if isinstance(p.annotation, str)
                           else getattr(p.annotation, "__name__", str(p.annotation))))
                     for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    except (TypeError, ValueError):
        signature, arguments = f"{reg.name}(...)", []
    try:
        file = inspect.getsourcefile(comp)
        line = inspect.getsourcelines(comp)[1]
    except (TypeError, OSError):
        file, line = None, None
    return dict(name=reg.name, hook_point=point, signature=signature, arguments=arguments,
                doc=inspect.getdoc(comp) or "", module=getattr(comp, "__module__", None),
                qualname=getattr(comp, "__qualname__", None), file=file, line=line,
                distribution=reg.provider.distribution, version=reg.provider.version,
                plugin=reg.provider.plugin,
                replaces=str(reg.replaced) if reg.replaced else None)


def _show_component(name: str, as_json: bool) -> int:
    import difflib

    from toolbox.hookspecs import HOOK_POINTS
    from toolbox.plugins import ensure_loaded, loaded_manager
    found = _component_info(name)
    if found is None:
        manager = loaded_manager()
        for point, by_name in manager.conflicts.items():
            if name in by_name:
                print(f"error: {by_name[name].message()}", file=sys.stderr)
                return 2
        table = ensure_loaded()
        names = sorted({n for p in HOOK_POINTS for n in table[p]})
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        print(f"error: '{name}' is neither a hook point ({', '.join(HOOK_POINTS)}) nor an "
              f"installed component.{hint} Run `toolbox plugins` to list them.",
              file=sys.stderr)
        return 2
    info = _describe(*found)
    if as_json:
        json.dump(info, sys.stdout, indent=2)
        print()
        return 0
    print(f"{info['name']}  ({info['hook_point']})")
    print(f"  provided by  {info['distribution']} {info['version']} (plugin '{info['plugin']}')"
          + (f", replacing {info['replaces']}" if info["replaces"] else ""))
    where = f"{info['file']}:{info['line']}" if info["file"] else "(no source file)"
    print(f"  defined in   {info['module']}.{info['qualname']}  {where}")
    print(f"  signature    {info['signature']}")
    if info["arguments"]:
        print("  arguments")
        width = max(len(a["name"]) for a in info["arguments"])
        for a in info["arguments"]:
            value = "(required)" if a["required"] else f"= {a['default']}"
            print(f"    {a['name']:<{width}}  {value}")
    if info["doc"]:
        print()
        for line in info["doc"].splitlines():
            print(f"  {line}".rstrip())
    return 0


def _plugins(args) -> int:
    from toolbox.hookspecs import HOOK_POINTS
    from toolbox.plugins import ensure_loaded, loaded_manager
    table = ensure_loaded(strict=args.strict or None)
    manager = loaded_manager()
    target = args.name
    if target and target not in HOOK_POINTS:
        return _show_component(target, args.json)
    points = [target] if target else list(HOOK_POINTS)
    rows = {point: [dict(name=r.name, distribution=r.provider.distribution,
                         version=r.provider.version, plugin=r.provider.plugin,
                         **({"replaces": str(r.replaced)} if r.replaced else {}))
                    for r in sorted(table[point].values(), key=lambda r: r.name)]
            for point in points}
    status = _status(manager, target)
    if args.json:
        json.dump(dict(hook_points=rows, **status), sys.stdout, indent=2)
        print()
        return 0
    print("plugins: " + ", ".join(f"{p['plugin']} ({p['distribution']} {p['version']})"
                                  for p in status["plugins"]))
    for f in status["failed"]:
        print(f"FAILED: plugin '{f['plugin']}' ({f['distribution']} {f['version']}) failed "
              f"to {f['what']}: {f['error']}")
    for s in status["skipped"]:
        print(f"not loaded: plugin '{s['plugin']}' ({s['distribution']} {s['version']}): "
              f"{s['reason']}")
    for c in status["clashes"]:
        print(f"CLASH: {c['message']} Configs that use '{c['name']}' fail until this is "
              "resolved; the rest work.")
    clashing = {(c["hook_point"], c["name"]): c for c in status["clashes"]}
    for point in points:
        extra_rows = [dict(name=n, clash=c) for (p, n), c in clashing.items() if p == point]
        print(f"\n{point} ({len(rows[point])})")
        width = max([len(r["name"]) for r in rows[point] + extra_rows] + [4])
        for r in rows[point]:
            extra = f"  [replaces {r['replaces']}]" if "replaces" in r else ""
            print(f"  {r['name']:<{width}}  {r['distribution']} {r['version']}{extra}")
        for r in extra_rows:
            print(f"  {r['name']:<{width}}  CLASH: {', '.join(r['clash']['distributions'])}")
    return 0


def main(argv=None) -> int:
    """The ``toolbox`` command; toolbox errors print as one short block, exit 2."""
    from toolbox.engine.errors_report import run_main
    return run_main(_main, argv)


def _main(argv=None) -> int:
    from toolbox import __version__
    parser = argparse.ArgumentParser(prog="toolbox", description="toolbox: detection and "
                                     "segmentation on plugins")
    parser.add_argument("--version", action="version", version=f"toolbox {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plugins", help="list hook points, components and their distributions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--strict", action="store_true", help="fail if any plugin fails to load")
    p.add_argument("name", nargs="?", metavar="HOOK_POINT|COMPONENT",
                   help="show only this hook point, or one component's signature, defaults, "
                        "docstring, distribution and file")
    from toolbox.scaffold import add_new_plugin_args
    add_new_plugin_args(sub.add_parser(
        "new-plugin", help="write a complete, installable plugin package with tests"))
    from toolbox.engine.launch import add_infer_args, add_test_args, add_train_args
    add_train_args(sub.add_parser("train", help="train a model from a config"))
    add_test_args(sub.add_parser("test", help="evaluate a checkpoint"))
    add_infer_args(sub.add_parser("infer", help="detect objects in images, draw them and "
                                  "write the detections as JSON"))
    args = parser.parse_args(argv)
    if args.command == "plugins":
        return _plugins(args)
    if args.command == "new-plugin":
        from toolbox.scaffold import main as new_plugin_main
        return new_plugin_main(args)
    from toolbox.engine import launch
    if args.command == "train":
        launch.train(args)
    elif args.command == "infer":
        from toolbox.apis.image_inference import run_inference
        run_inference(args)
    else:
        launch.test(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Import time of ``toolbox`` against ``torch``, each in a fresh interpreter.

``import toolbox`` should cost next to nothing (it imports neither torch nor
mmengine; ``tests/test_registry.py`` checks that laziness); the first
registry lookup pays for the components. The ratio makes the number
comparable across machines. Also times ``import toolbox.registry`` (mmengine's
registry) and the first lookup (every built-in loaded) for context.

    python benchmarks/import_time.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

STATEMENTS = {
    "import toolbox": "import toolbox",
    "import torch": "import torch",
    "import toolbox.registry": "import toolbox.registry",
    "first registry lookup": "from toolbox.registry import BACKBONES; BACKBONES.get('ResNet')",
}


def time_statement(statement: str) -> float:
    """Seconds ``statement`` takes in a fresh interpreter (one thread)."""
    code = ("import time; t = time.perf_counter()\n"
            f"{statement}\n"
            "print(time.perf_counter() - t)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout
    return float(out.split()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs per statement (median)")
    args = parser.parse_args(argv)
    medians = {name: statistics.median(time_statement(code) for _ in range(args.repeats))
               for name, code in STATEMENTS.items()}
    for name, seconds in medians.items():
        print(f"{name:<24} {seconds * 1000:9.1f} ms")
    ratio = medians["import toolbox"] / medians["import torch"]
    print(f"import toolbox / import torch = {ratio:.4f}")
    return dict(medians, ratio=ratio)


if __name__ == "__main__":
    main()

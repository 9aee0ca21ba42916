#!/usr/bin/env bash
# Create ./.venv with the toolbox, its tested dependency pins, the test extras
# and the two plugin packages in plugins/. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation \
    -e plugins/toolbox-plugin-template -e plugins/toolbox-timm
.venv/bin/toolbox plugins > /dev/null
echo "environment ready: $(.venv/bin/python -c 'import torch, toolbox; print("toolbox", toolbox.__version__, "torch", torch.__version__)')"

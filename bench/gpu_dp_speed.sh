#!/usr/bin/env bash
# DP vs plain step on the GPU machine (Python 3.12, torch, no registry): install the carried wheels
# (bench/wheels, gitignored: transformers + deps, numpy, monai, opacus) into a temporary site folder, and give
# opacus an import-only stand-in for scipy, which it needs for accounting alone (no accounting happens here).
set -euo pipefail
SITE=/tmp/site; STUB=/tmp/scipy_stub
pip install -q --no-index --no-deps --target "$SITE" bench/wheels/*.whl
mkdir -p "$STUB/scipy"
touch "$STUB/scipy/__init__.py"
for m in fft signal integrate special optimize stats; do
  printf 'def __getattr__(name):\n    def missing(*a, **k):\n        raise RuntimeError("scipy is absent on this machine")\n    return missing\n' > "$STUB/scipy/$m.py"
done
PYTHONPATH=".:$SITE:$STUB" python3 -m workbench.cli bench federated --device cuda --out "${OUT:-bench/results}"

#!/usr/bin/env bash
# bench model's training half on the GPU machine (python3 there has torch, transformers, scipy; no registry).
#
# Here:   workbench bench model --prepare-only [--truth T]            (cohorts, readers, encoded sets)
#         python -m workbench.bench.model_seeds pack WORK .pack/NAME   (about 24 kB a case; .pack/ is ignored)
# There:  this script, with .pack and .whl (monai, pydicom wheels for Python 3.12) carried: every seed of every
#         folder under .pack/ trains in its own process on the one GPU, and the models' own weights come back in
#         $OUT/trained.tgz (logs inside it).
# Here:   tar -xzf trained.tgz -C back; python -m workbench.bench.model_seeds import back/NAME WORK;
#         workbench bench model [--truth T] --out bench/results           (scores every model, writes the JSON)
set -uo pipefail
OUT=${OUT:-/tmp/out}
SEEDS=${SEEDS:-0-4}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="$PWD:/tmp/site" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p /tmp/back/logs "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
declare -A job
for w in .pack/*/; do
  name=$(basename "$w")
  for s in $(seq "${SEEDS%-*}" "${SEEDS#*-}"); do
    python3 -m workbench.bench.model_seeds train "$w" --seeds "$s" --device cuda --quiet \
      > "/tmp/back/logs/$name-seed$s.log" 2>&1 &
    job[$!]="$name seed $s"
  done
done
failed=0
for pid in "${!job[@]}"; do
  if ! wait "$pid"; then echo "FAILED: ${job[$pid]}"; tail -20 "/tmp/back/logs/$(echo "${job[$pid]}" | sed 's/ seed /-seed/').log"; failed=1; fi
done
for w in .pack/*/; do
  python3 -m workbench.bench.model_seeds export "$w" "/tmp/back/$(basename "$w")" || failed=1
done
tail -n 2 /tmp/back/logs/*.log
tar -czf "$OUT/trained.tgz" -C /tmp/back .
ls -la "$OUT"
exit $failed

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
source bench/gpu_jobs.sh
gpu_setup 1
mkdir -p /tmp/back/logs "$OUT"
for w in .pack/*/; do
  name=$(basename "$w")
  for s in $(seq "${SEEDS%-*}" "${SEEDS#*-}"); do
    job "/tmp/back/logs/$name-seed$s.log" "$name seed $s" \
      python3 -m workbench.bench.model_seeds train "$w" --seeds "$s" --device cuda --quiet
  done
done
failed=0
wait_jobs || failed=1
for w in .pack/*/; do
  python3 -m workbench.bench.model_seeds export "$w" "/tmp/back/$(basename "$w")" || failed=1
done
tail -n 2 /tmp/back/logs/*.log
tar -czf "$OUT/trained.tgz" -C /tmp/back .
ls -la "$OUT"
exit $failed

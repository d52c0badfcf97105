#!/usr/bin/env bash
# bench model's recipe sweep (workbench/bench/recipe_sweep.py) on the GPU machine: every recipe x seed trains in
# its own process on the one GPU; nothing is scored on the evaluation cohort (a packed folder has none).
#
# Here:   workbench bench model --prepare-only; python -m workbench.bench.model_seeds pack WORK .pack/NAME
# There:  this script, with .pack and .whl (monai, pydicom wheels for the machine's Python) carried; the models'
#         own weights and their trained.json come back in $OUT/<pack>-<recipe>.tgz, the logs in logs.tgz.
# Here:   for f in *.tgz; do tar -xzf $f -C back; done; python -m workbench.bench.recipe_sweep import back/NAME WORK;
#         python -m workbench.bench.recipe_sweep choose WORK --out bench/results; ... adopt WORK;
#         workbench bench model (scores the adopted models once)
set -uo pipefail
OUT=${OUT:-/tmp/out}
SEEDS=${SEEDS:-0-4}
RECIPES=${RECIPES:-base aux_weight_1 modality_dropout_0.4 weight_decay_0.1 lr_3e-4 patience_20}
source bench/gpu_jobs.sh
gpu_setup 1
mkdir -p /tmp/back/logs "$OUT"
for w in .pack/*/; do
  name=$(basename "$w")
  for r in $RECIPES; do
    for s in $(seq "${SEEDS%-*}" "${SEEDS#*-}"); do
      job "/tmp/back/logs/$name-$r-seed$s.log" "$name-$r-seed$s" timeout "${TRAIN_S:-470}" \
        python3 -m workbench.bench.recipe_sweep train "$w" --recipe "$r" --seeds "$s" --device cuda --quiet
    done
  done
done
failed=0
wait_jobs || failed=1
for w in .pack/*/; do
  python3 -m workbench.bench.recipe_sweep export "$w" "/tmp/back/$(basename "$w")" || failed=1
done
tail -qn 1 /tmp/back/logs/*.log | sort | uniq -c | head -40
# one archive a recipe (a file that comes back holds at most 16 MiB), one for the logs
for d in /tmp/back/*/*/; do
  tar -czf "$OUT/$(basename "$(dirname "$d")")-$(basename "$d").tgz" -C /tmp/back "${d#/tmp/back/}"
done
tar -czf "$OUT/logs.tgz" -C /tmp/back logs
ls -la "$OUT"
exit $failed

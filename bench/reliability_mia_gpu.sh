#!/usr/bin/env bash
# The membership-inference audit's federated models (workbench/bench/reliability/mia.py) on the GPU machine: 16
# models per variant, each a FedAvg of four nodes; the plain variant trains the fusion on the GPU, the DP variants
# (the fused head alone) on its CPU cores. python3 there has torch, transformers, scipy; monai, pydicom, opacus,
# dp-accounting and dm-tree come as wheels (.whl).
#
# Here:   python /tmp/... node_states(...) writes states-<cohort>.pt in the bench cache
#         (~/.cache/workbench/bench/reliability/mia/full/); copy it to .pack/mia/states.pt
#         python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl \
#             monai==1.6.1 pydicom==3.0.2 opacus==1.6.0 dp-accounting==0.6.0 dm-tree
# There:  this script, with .pack and .whl carried; $OUT/mia_models.tgz (<variant>/model<k>.json, logs) comes back
# Here:   copy them into ~/.cache/workbench/bench/reliability/mia/full/<variant>/ and run
#         workbench bench reliability --part mia (finds every model trained; computes the figures here)
set -uo pipefail
OUT=${OUT:-/tmp/out}
source bench/gpu_jobs.sh
gpu_setup 1
W=/tmp/mia  # the work folder (ledgers, logs); only the models' JSON files travel back, in one archive
mkdir -p "$W" "$OUT"
for r in ${RANGES:-0-3 4-7 8-11 12-15}; do
  for v in ${VARIANTS:-no_dp eps1 eps8}; do
    dev=cpu; [ "$v" = no_dp ] && dev=cuda
    job "$W/$v-$r.log" "$v-$r" python3 -m workbench.bench.reliability.mia .pack/mia/states.pt --out "$W" \
      --variant "$v" --models "$r" --device "$dev"
  done
done
failed=0
wait_jobs || failed=1
(cd "$W" && tar -czf "$OUT/mia_models.tgz" */model*.json *.log)
find "$W" -name 'model*.json' | wc -l
exit $failed

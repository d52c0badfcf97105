#!/usr/bin/env bash
# The poisoning audit's federations (workbench/bench/reliability/poison.py) on the GPU machine: every seed's eight
# runs (FedAvg and the trimmed mean, clean and under each attack) in their own process on the one GPU.
# python3 there has torch, transformers, scipy; monai, pydicom, opacus, dp-accounting and dm-tree come as wheels.
#
# Here:   .pack/poison/train.pt (the small cohort's states) and .pack/poison/eval.pt (the full test split's),
#         float16 where large (a call carries at most 64 MiB): node_states' files, converted
#         .whl as for bench/reliability_mia_gpu.sh
# There:  this script, with .pack/poison and .whl carried; $OUT/poison_runs.tgz comes back
# Here:   extract it into ~/.cache/workbench/bench/reliability/poison/full/ and run
#         workbench bench reliability --part poison (finds every run trained; computes the figures here)
set -uo pipefail
OUT=${OUT:-/tmp/out}
source bench/gpu_jobs.sh
gpu_setup 2
W=/tmp/poison
mkdir -p "$W" "$OUT"
for s in ${SEEDS:-0 1 2}; do
  job "$W/seed$s.log" "seed$s" python3 -m workbench.bench.reliability.poison .pack/poison/train.pt \
    .pack/poison/eval.pt --out "$W" --seed "$s" --aggregators "${AGGS:-fedavg,robust,trimmed_mean}" --device cuda
done
failed=0
wait_jobs || failed=1
(cd "$W" && tar -czf "$OUT/poison_runs.tgz" ./*.json ./*.log)
ls "$W"/*.json | wc -l
exit $failed

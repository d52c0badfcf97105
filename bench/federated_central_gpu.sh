#!/usr/bin/env bash
# bench federated's two pooled variants (centralized, centralized_head) on the GPU machine; the Flower runs stay
# where the cohort is. python3 there has torch, transformers, scipy; monai and pydicom come as wheels (.whl).
#
# Here:   python -m workbench.bench.federated_central pack --truth T .pack/central-T   (starting model, train split
#         with the frozen CT reader's states, the plan; .pack/ is ignored)
#         bash bench/device_wheels.sh                                                     (monai, pydicom)
# There:  this script, with .pack and .whl carried; SEEDS_<truth> picks the seeds (default 0-2): every truth and
#         seed trains in its own process on the one GPU; $OUT/central-<truth>-seed<s>.tgz come back.
# Here:   tar -xzf central-T-seed<s>.tgz -C back/T; python -m workbench.bench.federated_central import back/T
#         workbench bench federated --truth T ...   (finds them trained, scores them with the Flower runs)
set -uo pipefail
OUT=${OUT:-/tmp/out}
source bench/gpu_jobs.sh
gpu_setup 2
mkdir -p /tmp/back "$OUT"
for w in .pack/central-*/; do
  truth=$(basename "$w"); truth=${truth#central-}
  var="SEEDS_$truth"; seeds=${!var:-0-2}
  for s in $(seq "${seeds%-*}" "${seeds#*-}"); do
    job "/tmp/back/$truth-seed$s.log" "$truth-seed$s" \
      python3 -m workbench.bench.federated_central train "$w" --seeds "$s" --device cuda --out "/tmp/back/$truth"
  done
done
failed=0
wait_jobs || failed=1
for d in /tmp/back/*/seed*; do
  truth=$(basename "$(dirname "$d")"); s=$(basename "$d")
  cp "/tmp/back/$truth-$s.log" "$d/" 2>/dev/null
  tar -czf "$OUT/central-$truth-$s.tgz" -C "/tmp/back/$truth" central.json "$s"
done
cat /tmp/back/*/seed*/*.json
ls -la "$OUT"
exit $failed

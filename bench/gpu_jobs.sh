# Sourced by bench/*_gpu.sh on the GPU machine (python3 there has torch, transformers, scipy; no registry):
# the carried wheels installed, the package on the path, and jobs run in the background, each with its log.
declare -A JOBS

gpu_setup() {  # THREADS: OMP/MKL threads per job; names the GPU
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="$PWD:/tmp/site" OMP_NUM_THREADS=$1 MKL_NUM_THREADS=$1 PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
}

job() {  # LOG NAME COMMAND...: COMMAND in the background, stdout and stderr into LOG
  local log=$1 name=$2
  shift 2
  "$@" > "$log" 2>&1 &
  JOBS[$!]="$name|$log"
}

wait_jobs() {  # waits for every job; each failed one is named with its log's tail; status 1 if any failed
  local failed=0 pid
  for pid in "${!JOBS[@]}"; do
    if ! wait "$pid"; then echo "FAILED: ${JOBS[$pid]%%|*}"; tail -20 "${JOBS[$pid]#*|}"; failed=1; fi
  done
  return $failed
}

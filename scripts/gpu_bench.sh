#!/usr/bin/env bash
# GPU figures in one call on a lent GPU machine (the `device` tool of genlab's workplace): `genlab bench speed` on
# the GPU (fp32 and bf16 autocast, the GPU's matmul peaks measured in the same run, SDPA's kernels named), and
# `genlab bench mvar`'s speed rows on the GPU. The machine has torch but not diffusers: the wheels travel in .whl/
# (`pip download --no-deps diffusers==<ours> importlib_metadata` into .whl/, ignored by git). The shipped folders
# are larger than one call may carry, so the pipelines to time travel in .gpu/pipelines/ (ignored by git).
#
#   usage (on the device machine, from the repo root):  bash scripts/gpu_bench.sh [speed] [mvar]
#   env:  DEV (default cuda; cpu for a dry run here), OUT (reports; default bench/gpu), PIPES (default
#         .gpu/pipelines/*), SPEED_TIMEOUT / MVAR_TIMEOUT (seconds per bench, default 240 / 120), TOP_OPS (default
#         0: torch.profiler with CUDA activity took minutes on MAR's thousands of small kernels, bench/gpu/README.md)
set -u
DEV=${DEV:-cuda}
OUT=${OUT:-bench/gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1 && ! python3 -c "import diffusers" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
[ "$DEV" = cuda ] && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'cuda', torch.cuda.is_available())"
genlab() { python3 -m genlab.cli "$@"; }
jobs_=("$@"); [ ${#jobs_[@]} -eq 0 ] && jobs_=(speed mvar)
for job in "${jobs_[@]}"; do
  case $job in
    speed)
      # shellcheck disable=SC2086
      timeout "${SPEED_TIMEOUT:-240}" bash -c "$(declare -f genlab); genlab bench speed --device $DEV --pipelines ${PIPES:-.gpu/pipelines/*} \
        --batch-size 64 --repeats 2 --precisions fp32 bf16 --top-ops ${TOP_OPS:-0} --out $OUT/speed_gpu.md --json > $OUT/speed_gpu.json" \
        ; echo "speed rc=$?"; cat "$OUT/speed_gpu.md" 2>/dev/null ;;
    mvar)
      timeout "${MVAR_TIMEOUT:-120}" bash -c "$(declare -f genlab); genlab bench mvar --device $DEV --var '' --mvar '' --hidden-size 256 \
        --depth 6 --num-heads 4 --d-state 64 --mamba-headdim 64 --vocab-size 4096 --latent-channels 32 --batch-size 16 \
        --repeats 3 --seed 0 --out $OUT/mvar_gpu.md --json > $OUT/mvar_gpu.json" \
        ; echo "mvar rc=$?"; cat "$OUT/mvar_gpu.md" 2>/dev/null ;;
    *) echo "unknown job $job (speed, mvar)"; exit 2 ;;
  esac
done

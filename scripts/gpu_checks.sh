#!/usr/bin/env bash
# The checks that need a GPU, as one script (README, "Speed"):
#   1. a short trainer=gpu sweep of the CNN with bf16-mixed and channels_last, and its report
#   2. torch.compile on the GPU: compile_seconds recorded apart, no recompilation during training
#   3. the step benchmark's GPU cases (plain loop vs trainspeed, fp32 and bf16) with the clock against CUDA events,
#      then warm-up fairness on the GPU
# Usage: scripts/gpu_checks.sh [OUT_DIR [RUNS_DIR]]    (PYTHON=... to choose the interpreter; default .venv/bin/python)
# Each step's output goes to OUT_DIR/<step>.log and is echoed; the run folders go to RUNS_DIR (default OUT_DIR), so
# that OUT_DIR can hold the logs alone. The script goes on after a failed step and exits non-zero if any failed.
# Each step has a time limit in seconds (the sweep and compilation 75 each, the benchmark 420: all of it fits in
# 10 minutes), so that a hung or slow step leaves the later ones their turn. The two short, bounded checks run first;
# the benchmark prints each case's row as soon as it is measured, and its warm-up fairness after the table, so a
# benchmark stopped by its limit still leaves the rows it finished.
set -u
OUT=${1:-outputs/gpu_checks}
RUNS=${2:-$OUT}
PYTHON=${PYTHON:-.venv/bin/python}
export WANDB_MODE=${WANDB_MODE:-offline} PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUNS"
failed=0

step() {  # step NAME SECONDS COMMAND...: run it for at most SECONDS, keep its log, remember a failure
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    if ! timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"; then
        echo "== $name FAILED"
        failed=1
    fi
}

"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no GPU'; print(torch.cuda.get_device_name(0))" \
    || exit 1

set -o pipefail
step sweep 75 "$PYTHON" -m trainspeed.train -m trainer=gpu trainer.precision=bf16-mixed trainer.channels_last=true \
    model=cnn data=synthetic data.shape=[3,32,32] data.num_samples=4096 optimizer=sgd,adam seed=0,1 \
    target.value=0.5 trainer.max_epochs=3 "hydra.sweep.dir=$RUNS/sweep"
step report 30 "$PYTHON" -m trainspeed.report "$RUNS/sweep"
step compile 75 "$PYTHON" -m trainspeed.train trainer=gpu trainer.compile=true model=cnn trainer.max_epochs=2 \
    "hydra.run.dir=$RUNS/compile"
grep -h '"compile_seconds"\|"train_seconds"\|"steps"' "$RUNS/compile/summary.json" 2>/dev/null | tee "$OUT/compile.summary"
grep -c "during training" "$RUNS/compile/train.log" 2>/dev/null | sed 's/^/recompilation warnings: /' \
    | tee -a "$OUT/compile.summary"
step benchmark 420 "$PYTHON" scripts/benchmark_step.py --accelerators gpu --cases mlp,cnn,resnet18 \
    --repeats 5 --fairness 3
exit $failed

#!/usr/bin/env bash
# Every GPU check in one short run (for a borrowed GPU machine): the GPU tests, both benchmarks,
# and experiment=shakespeare_best at three precisions (time to val/loss <= 1.45 each).
#   OUT=gpu_out RUNS=/tmp/gpu_runs SEQMODELS_DATA_DIR=/path/to/data bash scripts/gpu_checks.sh
# Each step has its own time limit, so one failure leaves the others' results.
set -u
OUT=${OUT:-gpu_out}
RUNS=${RUNS:-$OUT/runs}
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
PY=${PY:-python3}
step() {  # step NAME SECONDS CMD...: run with a limit, log to $OUT/NAME.log, print the tail
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "== $name: exit $? in $((SECONDS - start)) s"
    tail -n "${TAIL:-25}" "$OUT/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"

step pytest_gpu 150 $PY -m pytest -q -p no:cacheprovider tests/layers/test_hand_lstm_cuda.py \
    tests/test_scale.py -k "cuda or gpu"
step bench_rnn 120 $PY scripts/bench_rnn.py --device cuda

curve() {  # the run's val/loss per epoch, seconds since its start, time to 1.45
    $PY scripts/val_curve.py "$1" --target 1.45
}
TAIL=4
for precision in 32-true bf16-mixed 16-mixed; do
    step "char_lm_$precision" 100 $PY scripts/train.py experiment=shakespeare_best \
        trainer.accelerator=gpu trainer.precision="$precision" callbacks.progress_bar=null \
        hydra.run.dir="$RUNS/$precision"
    curve "$RUNS/$precision" | tee "$OUT/curve_$precision.txt"
done
TAIL=16
step bench_throughput 120 $PY scripts/bench_throughput.py --device cuda --steps 30 --warmup 5

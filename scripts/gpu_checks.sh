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

step pytest_gpu 150 $PY -m pytest -q -p no:cacheprovider tests/models/test_hand_lstm_cuda.py \
    tests/test_scale.py -k "cuda or gpu"
step bench_rnn 120 $PY scripts/bench_rnn.py --device cuda

curve() {  # the run's val/loss per epoch with seconds since the first logged step
    $PY - "$1" <<'EOF'
import sys
from pathlib import Path
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
run = Path(sys.argv[1])
acc = EventAccumulator(str(next(run.glob("tensorboard/**/events.out.tfevents.*")).parent))
acc.Reload()
start = acc.FirstEventTimestamp()
hit, last = None, -1
for e, w in zip(acc.Scalars("val/loss"), acc.Scalars("val/loss_windowed")):
    if e.step <= last:  # the final metrics, logged again with the hparams
        continue
    last = e.step
    print(f"step {e.step:6d}  {e.wall_time - start:7.1f} s  val/loss {e.value:.4f}  windowed {w.value:.4f}")
    if hit is None and e.value <= 1.45:
        hit = e.wall_time - start
print("time to val/loss <= 1.45:", "not reached" if hit is None else f"{hit:.1f} s")
EOF
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

#!/bin/bash
# One GPU session in one call: `surgsam bench` on the GPU (fp32 engine, Meta's predictor and
# transformers' model; then the fast path taken apart: auto, eager bf16, static memory, compiled in bf16 and fp32), and parallel
# nano training runs from the shipped weights, sized to a wall-clock budget by a short probe of each (which doubles as the
# CUDA smoke test: a run whose probe fails is skipped).
#
#   benchmarks/gpu_session.sh OUT            # OUT: where results, logs and checkpoints go
#
# Run from the repository root on a machine with a GPU, torch and the package's needs
# (PYTHONPATH=src is set here). Meta's sam2 and its needs may be given as wheels in WHEELS
# (default .dev/whl); they are installed into /tmp/site first. Made on a machine with pip:
#   SAM2_BUILD_CUDA=0 pip wheel --no-deps --no-build-isolation sam2==1.1.0 iopath==0.1.10 -w .dev/whl
#   pip wheel --no-deps hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 -w .dev/whl
# Settings (environment):
#   DEV (cuda)            device of the training runs and the bench
#   TRAIN_END (470)       seconds after the start by which the training runs must have ended
#   BENCH_PARTS (240)     seconds for the fast-path bench (its two compiled variants compile twice each;
#                         fifo-trace makes its traces in the 15 warm-up frames)
#   SYNTH_VIDEOS (160)    videos of the generated training set (the project's `synth-nano`)
#   RUNS                  training runs, ';'-separated
#                         "name batch image_batch lr photometric seed [init [precision]]"
#                         (init: a checkpoint path or preset name, "-" for surgsam-nano-synth; a path
#                         from here travels only under a carried folder, e.g. .dev/init; precision:
#                         auto (bf16 on the GPU), bf16 or fp32)
#   DRY                   any value: a short CPU rehearsal (no bench; RUNS default to batch 1)
# Each run's step time is measured first (a 25-step probe, all runs at once) and its step count
# set so that it ends by TRAIN_END with its cosine schedule complete; each run's last three
# checkpoints (weights only), log and config are packed into OUT/run_NAME.tar (< 16 MB). OUT holds at
# most 7 files (the device tool returns 8): session.log (bench tables included), two bench JSONs and
# up to four run tars. Session 15's lease (H200) ran it in 560 s with TRAIN_END=470.
set -u
OUT=${1:?usage: benchmarks/gpu_session.sh OUT}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
T0=$(date +%s)
el() { echo $(($(date +%s) - T0)); }
DEV=${DEV:-cuda}
TRAIN_END=${TRAIN_END:-470}
BENCH_PARTS=${BENCH_PARTS:-240}
SYNTH_VIDEOS=${SYNTH_VIDEOS:-160}
PROBE_STEPS=${PROBE_STEPS:-25}
WORKERS=${WORKERS:-3}
WHEELS=${WHEELS:-.dev/whl}
PY=${PY:-python3}
# Session 15's bf16 runs at batch 8-16 (600-800 updates each) stayed below the CPU's batch-1 runs
# (thousands of updates) on validation: these ask whether bf16 or the few updates are why (fp32
# against bf16 at one setting; batch 2, 4 and 8 at one rate).
DEFAULT_RUNS="gA 4 8 1e-4 0.7 21 - fp32;gB 4 8 1e-4 0.7 21 - bf16;gC 8 16 1e-4 0.7 23 - fp32;gD 2 4 1e-4 0.7 24 - fp32"
[ -n "${DRY:-}" ] && DEFAULT_RUNS="gA 1 2 2e-4 0.7 21;gB 1 2 4e-4 0.0 22"
RUNS=${RUNS:-$DEFAULT_RUNS}
IFS=';' read -r -a RUN_LIST <<<"$RUNS"
exec > >(tee -a "$OUT/session.log") 2>&1
echo "start $(date), device $DEV"
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
    || echo "wheels: install failed"
  export PYTHONPATH=$PWD/src:/tmp/site
else
  export PYTHONPATH=$PWD/src
fi
[ "$DEV" = cuda ] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
$PY -c "import torch; print('torch', torch.__version__)"

DATA=/tmp/synth-nano
rm -rf $DATA /tmp/probe_* /tmp/run_*
($PY -m surgsam synth $DATA --videos "$SYNTH_VIDEOS" --frames 40 --size 320x256 --seed 0 --valid 16 --workers 14 \
  --no-progress >/tmp/synth.log 2>&1; echo "synth rc $?" >>/tmp/synth.log) &
SYNTH=$!

train_args() { # OUT_DIR BATCH IMAGE_BATCH LR PHOTOMETRIC SEED [INIT [PRECISION]]
  local init=${7:--}
  [ "$init" = - ] && init=surgsam-nano-synth
  echo --recipe nano-synth --data $DATA --out "$1" --init "$init" --precision "${8:-auto}" --batch-size "$2" \
    --image-batch-size "$3" --lr "$4" --aux-type-loss 1.0 --frame-resize pil --photometric-prob "$5" \
    --keep-checkpoints 0 --seed "$6" --threads 1 --workers "$WORKERS" --no-progress --log-every 5 --device "$DEV"
}

if [ -z "${DRY:-}" ]; then
  echo "[$(el)] bench, fp32 engine against Meta's and transformers' predictors"
  timeout 50 $PY -m surgsam bench --device "$DEV" --objects 1 2 --variants fifo efp dlm meta hf --frames 15 \
    --json "$OUT/bench_fp32.json" >/tmp/bench_fp32.txt 2>&1
  echo "bench rc $?"
  cat /tmp/bench_fp32.txt
  echo "[$(el)] bench, the fast path taken apart"
  timeout "$BENCH_PARTS" $PY -m surgsam bench --device "$DEV" --objects 1 4 --frames 15 --warmup 15 \
    --variants fifo fifo-fast fifo-bf16 fifo-static fifo-compiled fifo-compiled-fp32 fifo-trace \
    --json "$OUT/bench_parts.json" \
    >/tmp/bench_parts.txt 2>&1
  echo "bench parts rc $?"
  cat /tmp/bench_parts.txt
fi
wait $SYNTH
tail -2 /tmp/synth.log
echo "[$(el)] data ready"

echo "[$(el)] probe: $PROBE_STEPS steps of every run at once"
PIDS=""
for r in "${RUN_LIST[@]}"; do
  set -- $r
  # shellcheck disable=SC2046
  timeout 120 $PY -m surgsam train $(train_args /tmp/probe_$1 $2 $3 $4 $5 $6 ${7:-} ${8:-}) --steps "$PROBE_STEPS" --warmup 5 \
    --log-every 1 --ckpt-every 100000 >/tmp/probe_$1.log 2>&1 &
  PIDS="$PIDS $!"
done
[ -n "$PIDS" ] && wait $PIDS
declare -A SEC_PER_STEP
for r in "${RUN_LIST[@]}"; do
  set -- $r
  tail -2 /tmp/probe_$1.log
  # seconds per step over the probe's second half (start-up excluded)
  SEC_PER_STEP[$1]=$($PY -c '
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
a, b = rows[len(rows) // 2], rows[-1]
print(max(1e-3, (b["elapsed"] - a["elapsed"]) / max(1, b["step"] - a["step"])))' /tmp/probe_$1/log.jsonl 2>/dev/null)
  if [ -n "${SEC_PER_STEP[$1]}" ]; then echo "$1: ${SEC_PER_STEP[$1]} s/step"; else echo "$1: probe failed"; fi
done

echo "[$(el)] training"
START=$(el)
PIDS=""
for r in "${RUN_LIST[@]}"; do
  set -- $r
  s=${SEC_PER_STEP[$1]:-}
  [ -z "$s" ] && continue
  steps=$($PY -c "print(max(40, int(($TRAIN_END - $START - 20) / $s)))")
  every=$(((steps + 3) / 4))
  warmup=$((steps / 10 < 150 ? steps / 10 : 150))
  echo "$1: batch $2, lr $4, photometric $5, init ${7:--}, precision ${8:-auto}: $steps steps, checkpoint every $every, warm-up $warmup"
  mkdir -p /tmp/run_$1
  # shellcheck disable=SC2046
  timeout $((TRAIN_END + 40 - START)) $PY -m surgsam train $(train_args /tmp/run_$1 $2 $3 $4 $5 $6 ${7:-} ${8:-}) --steps "$steps" \
    --warmup "$warmup" --ckpt-every "$every" >/tmp/run_$1/stdout.log 2>&1 &
  PIDS="$PIDS $!"
done
[ -n "$PIDS" ] && wait $PIDS
echo "[$(el)] packing"
for r in "${RUN_LIST[@]}"; do
  set -- $r
  [ -d /tmp/run_$1 ] || continue
  tail -2 /tmp/run_$1/stdout.log
  ckpts=$(cd /tmp && ls run_$1/checkpoints/step_*.pt 2>/dev/null | grep -v state | tail -3)
  # shellcheck disable=SC2086
  (cd /tmp && tar cf "$OUT/run_$1.tar" run_$1/log.jsonl run_$1/train_config.json run_$1/stdout.log $ckpts)
done

echo "[$(el)] end $(date)"

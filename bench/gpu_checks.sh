#!/usr/bin/env bash
# The GPU checks behind bench/RESULTS.md's GPU figures, as one run for a lent GPU machine.
#
#   bash bench/gpu_checks.sh OUT_DIR                         # issue 25 (the default STEPS=14): under 10 minutes
#   STEPS=123 bash bench/gpu_checks.sh DATA_DIR OUT_DIR      # issue 13's checks; DATA_DIR holds ct_liver_msd/
#
# 1. bench/gpu_throughput.py: 1/2/4 Unet-resnet34 trials packed on one GPU, each eager, compiled and
#    compiled + CUDA graphs (the spec's "compile": off, default, reduce-overhead), as images/s and
#    the share of the measured matmul rate; the probe's memory estimate against the measured peak.
# 2. The product end to end on the GPU: ingest the liver slices, `submit --per-gpu auto` (packed
#    background workers), wait for the job, export the best trial (bundle + ONNX + TorchScript,
#    parity-checked) and predict with it.
# 3. bench/search_efficiency.py at 256 px, one process per method, all at once (the methods share
#    the device alike; their "compute to reach random's best" is recomputed from the JSON files).
# 4. bench/compile_study.py: the same 8-trial study (synthetic cells, 256 px, 3 epochs) end to end,
#    eager vs the compiled mode that was faster in step 1: the study's wall time, compiling included.
# Each step writes its log to OUT_DIR; a failed step does not stop the next. Steps 1 and 4 run one
# after the other (the throughput figures need the GPU to themselves), each under its own timeout.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ $# -ge 2 ]]; then DATA=$1 OUT=$2; else DATA= OUT=${1:?OUT_DIR}; fi  # the issue-13 order (DATA OUT) still works
PYTHON=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-60}
SIZE=${SIZE:-256}
TRIALS=${TRIALS:-8}
STEPS=${STEPS:-14}  # which of the steps below to run
if [[ $STEPS == *[23]* && -z $DATA ]]; then echo "steps 2 and 3 need DATA_DIR (the folder holding ct_liver_msd/)"; exit 2; fi
export PYTHONUNBUFFERED=1 SEGTUNE_HOME=${SEGTUNE_HOME:-/tmp/segtune-gpu}
mkdir -p "$OUT"

"$PYTHON" -c "import core.runtime.tuning, segmentation_models_pytorch, optuna, torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

if [[ $STEPS == *1* ]]; then
echo "== 1. packing and throughput: eager, compiled, compiled + CUDA graphs"
# shellcheck disable=SC2086  # the arguments are meant to split
timeout ${THROUGHPUT_TIMEOUT_S:-300} "$PYTHON" bench/gpu_throughput.py ${THROUGHPUT_ARGS:---steps 60 --packing 1,2,4} --json "$OUT/throughput.json" 2>&1 | tee "$OUT/throughput.log"
fi

if [[ $STEPS == *4* ]]; then
# the compiled mode that was faster in step 1 (one trial per GPU), else compiled + CUDA graphs
COMPILED=$("$PYTHON" -c "import json,sys; rows=[r for r in json.load(open(sys.argv[1]))['rows'] if r['mode'] != 'off' and r['packed'] == 1 and not r['warning']]; print(max(rows, key=lambda r: r['images_per_s'])['mode'] if rows else 'reduce-overhead')" "$OUT/throughput.json" 2>/dev/null || echo reduce-overhead)
echo "== 4. the same 8-trial study, eager vs $COMPILED"
# shellcheck disable=SC2086
timeout ${STUDY_TIMEOUT_S:-240} "$PYTHON" bench/compile_study.py ${STUDY_ARGS:---trials 8 --epochs 3 --images 400 --size 256} --modes "${STUDY_MODES:-off,$COMPILED}" \
  --json "$OUT/compile_study.json" 2>&1 | tee "$OUT/compile_study.log"
fi

if [[ $STEPS == *2* ]]; then
echo "== 2. end to end: ingest, submit --per-gpu auto, export, predict"
(
  set -e
  "$PYTHON" -m core ingest "$DATA/ct_liver_msd" --name liver
  cat > /tmp/liver-gpu.json <<SPEC
{"name": "liver-gpu", "dataset": "liver", "image_size": $SIZE, "sampler": "tpe", "pruner": "hyperband", "patience": 4,
 "budget": {"n_trials": $TRIALS, "max_epochs": 4},
 "split": {"train": 0.7, "val": 0.16, "test": 0.14, "seed": 0, "group_pattern": "^[a-z]+_(\\\\d+)_"},
 "search_space": {"architecture": {"choices": ["Unet", "DeepLabV3Plus", "FPN"]}, "encoder": {"choices": ["resnet18", "resnet34"]},
                  "optimizer": "adam", "lr": {"low": 1e-4, "high": 3e-3, "log": true}, "batch_size": {"choices": [8, 16]}, "loss": "dice_bce"}}
SPEC
  started=$(date +%s)
  "$PYTHON" -m core submit --spec /tmp/liver-gpu.json --per-gpu auto
  until "$PYTHON" -m core jobs list | grep -Eq "finished|failed|cancelled"; do
    [ $(( $(date +%s) - started )) -lt 240 ] || { echo "job still running after 240 s"; break; }
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
    sleep 10
  done
  echo "job took $(( $(date +%s) - started )) s"
  "$PYTHON" -m core jobs show 1 --log 40
  "$PYTHON" -m core export --study liver-gpu --out /tmp/best --format all
  model=$(find /tmp/best -mindepth 1 -maxdepth 1 -type d | head -1)
  mkdir -p /tmp/new && cp $(ls "$DATA/ct_liver_msd/images/"*.png | head -8) /tmp/new/
  "$PYTHON" -m core predict --model "$model" --images /tmp/new --out /tmp/masks
  ls /tmp/masks | head -3
) > "$OUT/end_to_end.log" 2>&1 &
fi

if [[ $STEPS == *3* ]]; then
echo "== 3. search efficiency at $SIZE px, budget $BUDGET_S epoch-s, methods in parallel"
for method in random tpe tpe+hyperband gp; do
  timeout ${SEARCH_TIMEOUT_S:-360} "$PYTHON" bench/search_efficiency.py --dataset "$DATA/ct_liver_msd" --size "$SIZE" --images 256 \
    --methods "$method" --seeds 3 --budget-s "$BUDGET_S" --threads 2 --json "$OUT/search_${method/+/-}.json" \
    > "$OUT/search_${method/+/-}.log" 2>&1 &
done
fi
wait  # the searches and the end-to-end run
tail -n 25 "$OUT/end_to_end.log" 2>/dev/null
tail -n 4 "$OUT"/search_*.log 2>/dev/null

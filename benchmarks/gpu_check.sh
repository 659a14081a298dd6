#!/usr/bin/env bash
# The GPU check of the captured step (about 5 minutes on one GPU; nothing here is needed to build
# or test the project). It writes at most 8 small files into OUT_DIR and prints a one-screen
# summary with each target and its figure:
#   cuda_tests.txt  the CUDA tests (captured update, fused kernels), <= 2 min, one shared compile cache
#   step.json       FPTT k=1 step, LTC H=256 B=128: eager default, captured, the paper's plain loop
#   compile.json    the captured update's compile time, cold and warm
#   throughput.*    S-MNIST-196 at batch 512: FPTT k=1 (captured and eager) against BPTT and the peers
#   epoch.txt       one epoch of fptt train --task smnist --downsample 14 on the full MNIST (if DATA_DIR)
#   summary.md      the targets and their figures
#   usage: bash benchmarks/gpu_check.sh [OUT_DIR] [DATA_DIR]
#          (default benchmarks/results/gpu; DATA_DIR holds the MNIST IDX files, e.g. ../shared/data/mnist)
# Runs with PYTHON (default .venv/bin/python, else python3) holding a CUDA build of torch.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/results/gpu}"
DATA="${2:-}"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
"$PY" -c "import torch, sys; print(torch.__version__, torch.cuda.get_device_name(0)); sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { echo "no CUDA device: nothing to do"; exit 1; }
# one compile cache for every step below, outside OUT (only results come back)
export FPTT_CACHE_DIR="${FPTT_CACHE_DIR:-/tmp/fptt-gpu-check-cache}"
timeout 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_captured.py tests/test_fused.py -k cuda \
  > "$OUT/cuda_tests.txt" 2>&1
tail -3 "$OUT/cuda_tests.txt"
timeout 90 "$PY" benchmarks/gpu_check.py step "$OUT" --device cuda 2>&1 | tail -12
timeout 90 "$PY" benchmarks/gpu_check.py compile "$OUT" --device cuda 2>&1 | tail -2
timeout 120 "$PY" -m fptt.cli bench throughput --device cuda --out "$OUT" 2>&1 | tail -9
rm -f "$OUT/throughput.png"
if [ -n "$DATA" ]; then
  RUN="$(mktemp -d)"
  timeout 150 "$PY" -m fptt.cli train --task smnist --downsample 14 --device cuda --data-dir "$DATA" --epochs 1 \
    --k 1 --capture --no-plots --run-dir "$RUN" > "$RUN/log.txt" 2>&1
  tail -4 "$RUN/log.txt" > "$OUT/epoch.txt"
  "$PY" -c "import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; print('EPOCH_SECONDS', rows[0]['train']['seconds'])" \
    "$RUN/metrics.jsonl" >> "$OUT/epoch.txt" 2>&1
  rm -rf "$RUN"
fi
"$PY" benchmarks/gpu_check.py summary "$OUT"
ls -l "$OUT"

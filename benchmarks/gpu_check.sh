#!/usr/bin/env bash
# Prepared for the day a GPU is lent (about 6 minutes on one GPU): CUDA correctness of the fused
# paths, then the speed (the default path included: compiled after FUSE_AFTER_STEPS steps),
# throughput (S-MNIST-196 at batch 512 against snnTorch and SpikingJelly), peer and memory
# benchmarks on CUDA, each writing JSON + Markdown.
#   usage: bash benchmarks/gpu_check.sh [OUT_DIR]      (default benchmarks/results/gpu)
# Needs a CUDA build of torch in .venv (or on PATH as python); nothing here is needed to build or test.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/results/gpu}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$OUT"
"$PY" -c "import torch, sys; print(torch.__version__, torch.cuda.get_device_name(0)); sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { echo "no CUDA device: nothing to do"; exit 1; }
# the compile cache on the machine's disk, so that each benchmark after the first loads its kernels
export FPTT_CACHE_DIR="${FPTT_CACHE_DIR:-$OUT/.cache}"
timeout 120 "$PY" -m pytest -q tests/test_fused.py -k "cuda or compiled or auto" 2>&1 | tee "$OUT/cuda_tests.txt"
timeout 150 "$PY" -m fptt.cli bench speed --device cuda --out "$OUT" 2>&1 | tail -8
timeout 120 "$PY" -m fptt.cli bench throughput --device cuda --out "$OUT" 2>&1 | tail -8
timeout 60 "$PY" -m fptt.cli bench peers --device cuda --out "$OUT" 2>&1 | tail -4
timeout 90 "$PY" -m fptt.cli bench memory --device cuda --quick --out "$OUT" 2>&1 | tail -4
rm -rf "$OUT/.cache"
ls -l "$OUT"

#!/usr/bin/env bash
# Run the named configs one after another: bash experiments/queue.sh name1 name2 ...
set -u
cd "$(dirname "$0")/.."
for name in "$@"; do
  if [ -f "experiments/results/$name.summary.json" ]; then echo "skip $name (done)"; continue; fi
  .venv/bin/python experiments/run.py "experiments/configs/$name.json" --out experiments/results || echo "FAILED $name"
done

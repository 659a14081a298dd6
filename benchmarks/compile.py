"""Cold and warm compile times of the fused path, the saving per step, and the payback length behind
``fused="auto"``. See ``fptt.bench.compile``.

Usage: python benchmarks/compile.py [--quick] [--out benchmarks/results] [--threads 2]
"""
import sys

from fptt.bench.compile import main

if __name__ == "__main__":
    main(sys.argv[1:])

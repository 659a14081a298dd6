"""Peak training memory vs sequence length (FPTT, TBPTT, BPTT). See ``fptt.bench.memory``.

Usage: python benchmarks/memory.py [--quick] [--out benchmarks/results] [--device cpu] [--threads 2]
"""
import sys

from fptt.bench.memory import main

if __name__ == "__main__":
    main(sys.argv[1:])

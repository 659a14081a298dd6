"""FPTT step vs its floor and a naive FPTT, epoch time vs BPTT, scaling. See ``fptt.bench.speed``.

Usage: python benchmarks/speed.py [--quick] [--out benchmarks/results] [--device cpu] [--threads 2]
"""
import sys

from fptt.bench.speed import main

if __name__ == "__main__":
    main(sys.argv[1:])

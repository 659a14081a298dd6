"""FPTT implementations side by side (fptt, SpikingJelly, the paper code's loop). See ``fptt.bench.peers``.

Usage: python benchmarks/peers.py [--quick] [--out benchmarks/results] [--device cpu] [--threads 2]
"""
import sys

from fptt.bench.peers import main

if __name__ == "__main__":
    main(sys.argv[1:])

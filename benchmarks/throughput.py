"""Samples per second and peak memory of an S-MNIST-196 batch of 512: FPTT k = 1 (compiled and exact)
and BPTT on the task-default LTC network, and BPTT on one equal LIF network in fptt, snnTorch and
SpikingJelly. See ``fptt.bench.throughput``.

Usage: python benchmarks/throughput.py [--quick] [--out benchmarks/results] [--device cpu] [--threads 2]
"""
import sys

from fptt.bench.throughput import main

if __name__ == "__main__":
    main(sys.argv[1:])

"""Byte-level fuzzing of the SHD reader in a child process with a watchdog.

libhdf5 (the C library under h5py) can loop for minutes, or crash, on a crafted file: a process
that parses untrusted HDF5 cannot protect itself from that, so the mutated files are read in a
child process that is killed after ``timeout`` seconds per file. Everything the reader *raises*
must be :class:`~fptt.data.SHDFormatError`; hangs and crashes are counted separately.

Used by tests/data/test_untrusted_files.py; also a campaign script (the figures of
docs/RELIABILITY.md)::

    python tests/data/shd_fuzz.py 1000        # 1000 mutated files, prints the outcome counts
"""
from __future__ import annotations

import collections
import json
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional

SOURCE = Path(__file__).resolve().parents[2] / "src"


def mutate(data: bytes, rng: random.Random) -> bytes:
    """1-8 byte edits (set, insert, delete), and in one case of ten a truncation."""
    mutated = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(mutated))
        kind = rng.choice(["set", "set", "set", "insert", "delete"])
        if kind == "set":
            mutated[position] = rng.randrange(256)
        elif kind == "insert":
            mutated.insert(position, rng.randrange(256))
        else:
            del mutated[position]
    if rng.random() < 0.1:
        mutated = mutated[: rng.randrange(len(mutated))]
    return bytes(mutated)


def write_mutants(good: bytes, folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` folders ``folder/<i>/shd_train.h5`` holding mutants of ``good``."""
    rng = random.Random(seed)
    roots = []
    for index in range(count):
        root = folder / str(index)
        root.mkdir(parents=True, exist_ok=True)
        (root / "shd_train.h5").write_bytes(mutate(good, rng))
        roots.append(root)
    return roots


def _child() -> None:  # pragma: no cover - runs in the child process
    import warnings

    warnings.simplefilter("ignore")
    from fptt.data import SHD, SHDFormatError

    print("ready", flush=True)
    for line in sys.stdin:
        root = line.strip()
        try:
            dataset = SHD(root, num_bins=4)
            for index in range(len(dataset)):
                x, y = dataset[index]
                assert tuple(x.shape) == (4, 700) and 0 <= int(y) < 20
            dataset.close()
            outcome = "loaded"
        except SHDFormatError:
            outcome = "SHDFormatError"
        except Exception as error:  # noqa: BLE001 - what the campaign is looking for
            outcome = f"unexpected {type(error).__name__}: {str(error)[:200]}"
        print(json.dumps(outcome), flush=True)


def run(roots: list[Path], timeout: float = 5.0, startup_timeout: float = 120.0) -> dict[Path, str]:
    """The outcome of reading each root in a watched child: ``loaded``, ``SHDFormatError``,
    ``hang`` (killed after ``timeout`` s), ``crash (exit N)`` or ``unexpected ...``."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(SOURCE) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    outcomes: dict[Path, str] = {}
    pending = list(roots)
    while pending:
        child = subprocess.Popen([sys.executable, __file__, "--child"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        lines: queue.Queue[Optional[str]] = queue.Queue()

        def read(stream=child.stdout, sink=lines) -> None:
            for text in stream:
                sink.put(text.strip())
            sink.put(None)

        threading.Thread(target=read, daemon=True).start()
        child.stdin.write("".join(f"{root}\n" for root in pending))
        child.stdin.close()
        ready = False
        try:
            while pending:
                try:
                    line = lines.get(timeout=timeout if ready else startup_timeout)
                except queue.Empty:
                    if not ready:
                        raise RuntimeError("the fuzzing child did not start") from None
                    outcomes[pending.pop(0)] = "hang"
                    break
                if line is None:  # the child died inside the library
                    outcomes[pending.pop(0)] = f"crash (exit {child.wait()})"
                    break
                if line == "ready":
                    ready = True
                    continue
                outcomes[pending.pop(0)] = json.loads(line)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
    return outcomes


def good_file(folder: Path) -> bytes:
    """A small valid SHD file (3 digits), as bytes."""
    import h5py
    import numpy as np

    path = folder / "good.h5"
    with h5py.File(path, "w") as handle:
        times = handle.create_dataset("spikes/times", (3,), dtype=h5py.vlen_dtype(np.float32))
        units = handle.create_dataset("spikes/units", (3,), dtype=h5py.vlen_dtype(np.uint16))
        for index in range(3):
            times[index] = np.linspace(0.0, 0.9, 5 + index, dtype=np.float32)
            units[index] = np.arange(5 + index, dtype=np.uint16) * 100
        handle.create_dataset("labels", data=np.array([4, 19, 0], dtype=np.uint16))
        handle.create_dataset("extra/speaker", data=np.arange(3, dtype=np.uint16))
        handle.create_dataset("extra/keys", data=np.array([f"word{i}".encode() for i in range(20)]))
    return path.read_bytes()


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 200
    seed = int(argv[1]) if len(argv) > 1 else 1
    with tempfile.TemporaryDirectory() as folder:
        roots = write_mutants(good_file(Path(folder)), Path(folder) / "mutants", count, seed)
        outcomes = run(roots)
    counts = collections.Counter(outcome if not outcome.startswith("crash") else "crash" for outcome in outcomes.values())
    print(json.dumps({"files": count, "seed": seed, **counts}))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        _child()
    else:
        sys.exit(main(sys.argv[1:]))

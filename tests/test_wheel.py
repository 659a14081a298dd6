"""The release installs from a wheel: `python -m build` makes an sdist and a wheel, `twine check`
passes on both, and the wheel alone (no extras, no source tree) runs `fptt --version` and a short
`fptt train --task add`, in a fresh virtual environment that gets only the pinned torch first.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # the Makefile's pin (a local CPU wheel on the project's machines)

pytestmark = pytest.mark.slow


def _run(*command: str | os.PathLike, cwd: Path, timeout: float = 300) -> str:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # one OpenMP thread: with two on 2 cores shared with the rest of the suite (or anything else), the 20
    # batches took 104 s instead of about 5
    env.setdefault("OMP_NUM_THREADS", "1")
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{command} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def test_the_wheel_installs_and_trains_without_the_source_tree(tmp_path: Path) -> None:
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--outdir", dist, ROOT, cwd=tmp_path)
    wheels, sdists = sorted(dist.glob("fptt-*.whl")), sorted(dist.glob("fptt-*.tar.gz"))
    assert [path.name for path in wheels] == [f"fptt-{version}-py3-none-any.whl"]
    assert [path.name for path in sdists] == [f"fptt-{version}.tar.gz"]
    _run(sys.executable, "-m", "twine", "check", "--strict", *wheels, *sdists, cwd=tmp_path)

    environment = tmp_path / "fresh"
    venv.create(environment, with_pip=True)
    bin_dir = environment / "bin"
    _run(bin_dir / "python", "-m", "pip", "install", "--quiet", TORCH, cwd=tmp_path)
    _run(bin_dir / "python", "-m", "pip", "install", "--quiet", wheels[0], cwd=tmp_path)  # no extras

    work = tmp_path / "elsewhere"
    work.mkdir()
    assert _run(bin_dir / "fptt", "--version", cwd=work).strip() == f"fptt {version}"
    where = _run(bin_dir / "python", "-c", "import fptt; print(fptt.__file__, fptt.__version__)", cwd=work)
    assert str(environment) in where and str(ROOT) not in where and version in where
    output = _run(bin_dir / "fptt", "train", "--task", "add", "--max-batches", "20", cwd=work)  # the README's command
    assert len(list(work.glob("runs/add-fptt-*/summary.json"))) == 1, output

"""A hash of the library's source (src/fptt/**/*.py), so that `make docs` reruns the tutorials when
the library changes, not only when a tutorial's own code does (jupyter-cache keys on the code cells)."""
from __future__ import annotations

import hashlib
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src" / "fptt"


def library_hash(source: Path = SOURCE) -> str:
    """12 hex digits of SHA-256 over every module's path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(source.rglob("*.py")):
        digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]

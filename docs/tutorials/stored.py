"""The tutorials' stored outputs: `make docs` executes the tutorials and saves what they printed and
plotted here (docs/tutorials/executed/*.ipynb, committed); `make test` builds the site from them
without executing anything.

    python docs/tutorials/stored.py save CACHE   # after a build that executed into CACHE/<library hash>
    python docs/tutorials/stored.py load CACHE   # before a build that must reuse the stored outputs

``load`` fails when a tutorial's code no longer matches its stored outputs (the page was edited and
``make docs`` not rerun), or when a stored tutorial did not end with its check passing.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from myst_nb.core.read import read_myst_markdown_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "_ext"))
from library_hash import library_hash  # noqa: E402

STORED = HERE / "executed"
PASSED = "check passed"


def tutorials() -> list[Path]:
    """The tutorial pages, in order (docs/tutorials/NN_*.md)."""
    return sorted(path for path in HERE.glob("[0-9][0-9]_*.md"))


def source(path: Path) -> nbformat.NotebookNode:
    """The notebook MyST-NB reads from a tutorial page (the same one it hashes for its cache)."""
    return read_myst_markdown_notebook(path.read_text(encoding="utf-8"), path=path)


def last_output(notebook: nbformat.NotebookNode) -> str:
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    return "".join(output.get("text", "") for output in cells[-1].get("outputs", []))


def save(cache_root: Path) -> None:
    library = library_hash()
    cache = get_cache(cache_root / library)  # the cache conf.py executed into for this library source
    STORED.mkdir(exist_ok=True)
    for page in tutorials():
        record = cache.match_cache_notebook(source(page))  # KeyError: the build did not execute this page
        bundle = cache.get_cache_bundle(record.pk)
        notebook = bundle.nb
        notebook.metadata["fptt_execution_seconds"] = round(record.data.get("execution_seconds") or 0.0, 1)
        notebook.metadata["fptt_library_hash"] = library  # the src/fptt it ran with (for information)
        if PASSED not in last_output(notebook):
            raise SystemExit(f"{page.name}: the stored run did not end with {PASSED!r}")
        nbformat.write(notebook, STORED / f"{page.stem}.ipynb")
        print(f"stored {page.name} ({notebook.metadata['fptt_execution_seconds']} s)")


def load(cache_path: Path) -> None:
    cache = get_cache(cache_path)
    stale = []
    for page in tutorials():
        stored = STORED / f"{page.stem}.ipynb"
        if not stored.exists():
            stale.append(f"{page.name}: no stored outputs ({stored.relative_to(HERE.parent.parent)})")
            continue
        notebook = nbformat.read(stored, as_version=4)
        if PASSED not in last_output(notebook):
            stale.append(f"{page.name}: the stored run did not end with {PASSED!r}")
            continue
        cache.cache_notebook_bundle(CacheBundleIn(notebook, str(page), data={
            "execution_seconds": notebook.metadata.get("fptt_execution_seconds")}), check_validity=False, overwrite=True)
        try:
            cache.match_cache_notebook(source(page))
        except KeyError:
            stale.append(f"{page.name}: its code changed since its outputs were stored")
    if stale:
        raise SystemExit("stale tutorial outputs, run `make docs` and commit docs/tutorials/executed/:\n  "
                         + "\n  ".join(stale))
    print(f"{len(tutorials())} tutorials: stored outputs match their pages")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("save", "load"):
        raise SystemExit(__doc__)
    {"save": save, "load": load}[sys.argv[1]](Path(sys.argv[2]))

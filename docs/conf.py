"""Sphinx configuration of the fptt site (`make docs`; `make test` builds it too).

The Markdown pages under docs/ are MyST pages of the site; docs/tutorials/*.md are MyST-NB text
notebooks. `make docs` executes them (FPTT_DOCS_EXECUTE=cache, the default: a tutorial runs again
when its code or the library's source changed since the last build; "force": all; "off": no
outputs) and stores their
outputs in docs/tutorials/executed/; `make test` builds the site from those stored outputs
(FPTT_DOCS_CACHE, a jupyter-cache filled by docs/tutorials/stored.py), executing nothing.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

from library_hash import library_hash  # noqa: E402

import fptt  # noqa: E402  (the installed package: `make docs` installs it)

project = "fptt"
author = "fptt contributors"
copyright = "fptt contributors, MIT licence"
release = fptt.__version__
version = release

extensions = [
    "myst_nb",                      # MyST Markdown pages and executed notebooks (myst_parser comes with it)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",          # the docstrings' "Args:"/"Returns:" sections
    "sphinx.ext.mathjax",           # .. math:: and :math: in docstrings, $...$ in pages
    "sphinx-mathjax-offline",       # MathJax copied into the site: the math renders without a network
    "sphinx.ext.viewcode",
    "sphinx_codeautolink",          # names in the tutorials' and guides' code link to their API entries
    "repo_links",                   # links from docs/ to files elsewhere in the repository
    "section_links",                # "THEORY §3.5" in a page or a docstring links to that section
    "code_links",                   # `fptt.x.y` written as inline code links to its API entry
]

# --- links into the repository -------------------------------------------------------------------
# A page's link to a file outside the site (benchmarks/results/, experiments/, examples/, src/) points
# at that file online: REPOSITORY_FILES + its path (docs/_ext/repo_links.py; a link to a path missing
# from the checkout still fails the build). FPTT_REPO_URL overrides the base (a fork, a tag);
# FPTT_REPO_URL=checkout links to the files of the checkout the site was built from instead.
REPOSITORY = "https://github.com/fptt-snn/fptt"
REPOSITORY_FILES = "https://github.com/fptt-snn/fptt/blob/main"
fptt_repo_url = os.environ.get("FPTT_REPO_URL") or REPOSITORY_FILES

source_suffix = {".md": "myst-nb", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "results/tables.md", "tutorials/executed"]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
# GitHub-style anchors (#9-classification-at-k--1-...), as the pages link to them on GitHub
myst_heading_anchors = 4
suppress_warnings = ["myst.header"]  # pages that start below level-1 headings are fine

# --- the tutorials -------------------------------------------------------------------------------
# One torch thread in the tutorials' kernels unless OMP_NUM_THREADS says otherwise: on a 2-core machine
# that is busy with anything else, two OpenMP threads ran an MNIST-1D epoch 3x slower than one (22.8 s
# vs 7.3 s, measured while a benchmark held one core)
os.environ.setdefault("OMP_NUM_THREADS", "1")
nb_execution_mode = os.environ.get("FPTT_DOCS_EXECUTE", "cache")
# one cache per state of the library's source: a change to src/fptt reruns every tutorial in make docs
# (jupyter-cache alone would rerun only the tutorials whose code changed)
nb_execution_cache_path = os.environ.get("FPTT_DOCS_CACHE",
                                         str(DOCS / "_build" / ".jupyter_cache" / library_hash()))
nb_execution_in_temp = True          # a tutorial writes nothing into the source tree
nb_execution_timeout = 600           # per cell; a tutorial is meant to take <= 90 s, this only stops a hang
nb_execution_raise_on_error = True   # a failing cell (the closing check included) fails the build
nb_execution_show_tb = True
nb_merge_streams = True

# --- the API reference ---------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False


def _no_type_docstring(app, what, name, obj, options, lines):  # noqa: ANN001 - Sphinx's event signature
    """A module constant without a doc comment would show its type's docstring (dict's, tuple's): drop it,
    so that the page's own text for it (``.. autodata::`` content) stands alone."""
    import inspect

    if what in ("data", "attribute") and lines and not inspect.isclass(obj) and not callable(obj):
        own = inspect.getdoc(type(obj)) or ""
        if own and "\n".join(lines).strip() == own.strip():
            lines.clear()


def setup(app):  # noqa: ANN001, ANN201
    app.connect("autodoc-process-docstring", _no_type_docstring)


# optional libraries the adapters wrap: documented without importing them for real
autodoc_mock_imports: list[str] = []

# --- links from code to the reference (sphinx-codeautolink; no intersphinx: the build stays offline) --
codeautolink_concat_default = True     # a tutorial's cells form one program: names imported above link below
codeautolink_warn_on_missing_inventory = False   # torch, numpy and matplotlib names have no entry here
codeautolink_warn_on_failed_resolve = False

# --- the theme -----------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"fptt {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {"navigation_with_keys": True}
html_show_sourcelink = False

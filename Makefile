# Two commands do everything on a fresh machine (Python >= 3.10):
#   make demo   -- set up .venv and run the FPTT-vs-BPTT demo (the adding task, T = 200, ~2.5 min)
#   make test   -- set up .venv (with the interop, logging and docs extras), run ruff and mypy, build the
#                  documentation site from the tutorials' stored outputs, then the test suite (the wheel install included)
#   make docs   -- the documentation site in docs/_build/html, executing the tutorials (~5 min on 2 cores the first
#                  time, then only those whose code changed), and store their outputs in docs/tutorials/executed/
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
INTEROP := $(VENV)/.interop
DOCS   := $(VENV)/.docs
SPHINX := $(BIN)/python -m sphinx -W --keep-going -q -b html

.PHONY: demo test lint venv clean bench docs docs-stored

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,data,plot,config]"
	touch $(STAMP)

# the interop and logging extras, for their tests: once per venv, torch held at $(TORCH)
$(INTEROP): $(STAMP) constraints/interop.txt
	$(BIN)/python -m pip install --quiet -c constraints/interop.txt -e ".[interop,logging]"
	touch $(INTEROP)

# the documentation site's tools (pinned in the docs extra), torch held at $(TORCH)
$(DOCS): $(INTEROP) constraints/interop.txt
	$(BIN)/python -m pip install --quiet -c constraints/interop.txt -e ".[docs,interop,data,plot]"
	touch $(DOCS)

# the site, warnings as errors; the tutorials run (those whose code changed since the last build) and
# their outputs are stored in docs/tutorials/executed/ (commit them: make test builds from them)
docs: $(DOCS)
	$(SPHINX) docs docs/_build/html
	$(BIN)/python docs/tutorials/stored.py save docs/_build/.jupyter_cache

# the site from the stored outputs, executing nothing (fails if a tutorial changed since make docs)
docs-stored: $(DOCS)
	rm -rf docs/_build/.stored_cache docs/_build/stored
	$(BIN)/python docs/tutorials/stored.py load docs/_build/.stored_cache
	FPTT_DOCS_CACHE=docs/_build/.stored_cache $(SPHINX) docs docs/_build/stored

demo: $(STAMP)
	$(BIN)/fptt demo

# lint and types first (seconds), then the suite
lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy

# the site before the suite, so that pytest's summary stays the run's last line
test: $(STAMP) $(INTEROP) $(DOCS) lint docs-stored
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/fptt bench memory
	$(BIN)/fptt bench speed

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .pytest_cache docs/_build

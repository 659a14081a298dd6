# Two commands do everything on a fresh machine (Python >= 3.10):
#   make demo   -- set up .venv and run the FPTT-vs-BPTT demo (the adding task, T = 200, ~2.5 min)
#   make test   -- set up .venv (with the interop and logging extras), run ruff and mypy, then the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
INTEROP := $(VENV)/.interop

.PHONY: demo test lint venv clean bench

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

demo: $(STAMP)
	$(BIN)/fptt demo

# lint and types first (seconds), then the suite
lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy

test: $(STAMP) $(INTEROP) lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/fptt bench memory
	$(BIN)/fptt bench speed

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache

# Two entry points (see README): `make demo` and `make test`. Both set up .venv first.
# TORCH defaults to the CPU build the test machines carry; on a CUDA machine run
# `make demo TORCH=torch` to get your CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/mmrag demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

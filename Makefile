# Entry points (see README): `make demo`, `make test`, `make lint`. All set up .venv first,
# installing the versions pinned in .ci/constraints.txt (what CI runs).
# TORCH defaults to the CPU build the test machines carry; on a CUDA machine run
# `make demo TORCH=torch` to get your CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
CONSTRAINTS ?= .ci/constraints.txt
BIN := $(VENV)/bin
LATEST_VENV := .venv-latest

.PHONY: setup demo test lint format test-latest constraints

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/mmrag demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The suite against the newest versions pyproject allows (no constraints), in its own venv.
# Run it on purpose, and before each `make constraints`; CI stays pinned.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(LATEST_VENV)/bin/python -m pip install -q -e ".[dev]"
	$(LATEST_VENV)/bin/python -m pytest -q

# Refresh the pins from the environment `make test-latest` just passed in.
constraints:
	{ head -n 2 $(CONSTRAINTS); $(LATEST_VENV)/bin/python -m pip freeze --exclude-editable \
	  | grep -v -e '^-e ' -e '^torch==' -e '^mmrag'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	@echo "wrote $(CONSTRAINTS); run make test with it and commit it"

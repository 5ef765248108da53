# One entry point for the tasks of this repository. Every target installs what
# it needs into .venv from the project's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo dev protos check lint types test bench clean

# Installs the suite with its server dependencies and runs the documented example.
demo:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet '.[server]'
	$(BIN)/stepforge demo

# A strict editable install: mypy can follow it, and new modules need a rerun.
dev:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --config-settings editable_mode=strict -e '.[dev]'

protos: dev
	$(BIN)/python protos/generate.py

check: dev
	$(BIN)/python protos/generate.py --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy -p stepforge
	$(BIN)/pytest

test: dev
	$(BIN)/pytest

bench: dev
	$(BIN)/python benchmarks/create_step.py
	$(BIN)/python benchmarks/run_pipeline.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

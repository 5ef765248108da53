# One entry point for the tasks of this repository. Every target installs what
# it needs into .venv from the project's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo dev protos check lint types test bench clean system-tools node-deps

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

# The Git tests start real sshd and git daemon servers; the console's tests drive
# a headless Chromium. apt-get runs only when a tool is missing, so a machine
# that has them needs no root.
SYSTEM_TOOLS := sshd ssh ssh-keygen git chromium chromedriver
SYSTEM_PACKAGES := openssh-server openssh-client git chromium chromium-driver

system-tools:
	@missing=; \
	for tool in $(SYSTEM_TOOLS); do \
	  command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] \
	    || missing="$$missing $$tool"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing $(SYSTEM_PACKAGES) for:$$missing"; \
	  apt-get update \
	    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	      $(SYSTEM_PACKAGES); \
	fi

protos: dev
	$(BIN)/python protos/generate.py

# The Node.js client's test tools and buf, exactly as the lockfile pins them.
NODE_CLIENT := clients/node
BUF := $(NODE_CLIENT)/node_modules/.bin/buf

node-deps:
	npm ci --prefix $(NODE_CLIENT) --no-audit --no-fund

# buf reads protos/buf.yaml, the module root of the directory it is given.
check: system-tools dev node-deps
	$(BIN)/python protos/generate.py --check
	$(BUF) lint protos
	$(BUF) format --diff --exit-code protos
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy -p stepforge
	$(BIN)/pytest

test: system-tools dev node-deps
	$(BIN)/pytest

bench: dev
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache $(NODE_CLIENT)/node_modules

# Set-up and the two README commands.  `make run` creates .venv (pinned versions from constraints.txt) and runs
# the no-flag default; `make test` runs the test suite (creating .venv if needed).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/.installed: setup.cfg constraints.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

.PHONY: install run test
install: $(BIN)/.installed

run: $(BIN)/.installed
	$(BIN)/python run_benchmark.py

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

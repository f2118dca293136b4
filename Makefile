# Set-up and the two README commands.  `make run` creates .venv (pinned versions from constraints.txt) and runs
# the no-flag default; `make test` runs the test suite (creating .venv if needed).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

# TORCH_INDEX: a PyTorch wheel index to take torch and torchvision from first, e.g. the CPU-only builds
# (`make install TORCH_INDEX=https://download.pytorch.org/whl/cpu`): PyPI's Linux torch is the CUDA build, and with
# its nvidia and triton packages .venv takes 6.7 GB, 4.1 GB of them for CUDA alone.
TORCH_INDEX ?=

$(BIN)/.installed: setup.cfg constraints.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install -q -c constraints.txt --index-url $(TORCH_INDEX) torch torchvision)
	# PYTHONWARNINGS: setuptools' "Editable installation ... be careful with folders" box (printed even under -q)
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

.PHONY: install run test
install: $(BIN)/.installed

run: $(BIN)/.installed
	$(BIN)/python run_benchmark.py

# One pytest-xdist worker per core (at most 4: each holds torch and Avalanche); tests/conftest.py gives each worker
# its share of the cores as threads.  Measured on 2 cores (439 tests): 632 s idle, 727-811 s beside other work.
# A module fixture (the smoke run of test_cli.py, the teacher of test_dfkd_runner.py) is made once per worker that
# needs it: --dist loadgroup would keep such tests together, but pytest-xdist 3.8 marks groups on `item._nodeid`,
# which pytest 9.2 no longer reads, so the groups have no effect.  `.venv/bin/python -m pytest tests/test_x.py` runs serially.
test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4

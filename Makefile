# Set-up and the main jobs. Every target creates .venv and installs what it needs first.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(TORCH_VERSION)

.PHONY: install test lint format demo bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

lint: install
	$(BIN)/ruff check regimen tests benchmarks scripts
	$(BIN)/ruff format --check regimen tests benchmarks scripts

format: install
	$(BIN)/ruff format regimen tests benchmarks scripts
	$(BIN)/ruff check --fix regimen tests benchmarks scripts

test: lint
	$(BIN)/python -m pytest -q -n 2 --durations=15 tests  # two workers: most of the time is subprocesses waiting on each other

# Trains the handwritten-digits example into runs/digits (replacing an earlier demo run) and prints its results.
demo: install
	$(BIN)/regimen train training_config/digits.jsonnet -s runs/digits --force
	$(BIN)/regimen print-results runs/digits

# The benchmark suite (benchmarks/RESULTS.md): step overhead, start-up, checkpoints, scaling; with Lightning.
bench: install
	$(BIN)/python -m pip install --quiet -e ".[bench]" "torch==$(TORCH_VERSION)"
	$(BIN)/python -m benchmarks

bench-quick: install
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

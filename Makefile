# Quick start: `make run` (set up, then compare the bundled shapes) and `make test` (set up, then test).
# Set-up creates .venv/ when missing, installs the project editable with its test extra, and warms the
# KeOps compilation cache once, inside the project (.cache/keops), so tests never compile concurrently.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.geom-installed
# torch==2.13.0 resolves to the CPU build where one lies in pip's find-links (as on our machines);
# override for another build, e.g. `make test TORCH=torch==2.13.0+cu128`.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=
export KEOPS_CACHE_FOLDER := $(CURDIR)/.cache/keops
export MPLBACKEND := Agg

.PHONY: setup run test bench bench-schemes bench-flows bench-energy gpu-check lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@bash .ci/system-deps.sh
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,open3d]"
	@$(BIN)/python -c "import open3d" 2>/dev/null && echo "open3d: importable" \
	  || echo "open3d: not importable here (needs libusb-1.0); geom works without it, .pcd falls back to the built-in reader"
	@echo "Warming the KeOps cache in $(KEOPS_CACHE_FOLDER) (first time: about a minute)..."
	@$(BIN)/python -c "from geom.reductions import warm_keops_cache as w; print('keops formulas ready:', len(w()))" \
	  || echo "KeOps could not compile here; reductions use the dense backend"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/geom demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python tools/bench.py

bench-schemes: $(STAMP)
	$(BIN)/python tools/schemes_bench.py

bench-flows: $(STAMP)
	$(BIN)/python tools/flows_bench.py

bench-energy: $(STAMP)
	$(BIN)/python tools/energy_bench.py

gpu-check: $(STAMP)
	$(BIN)/python tools/gpu_check.py

lint: $(STAMP)
	$(BIN)/ruff check geom plugins tools datasets tests

clean:
	rm -rf $(VENV) .cache build *.egg-info .pytest_cache .hypothesis

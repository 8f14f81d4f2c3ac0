# Quick start: `make run` (set up, then compare the bundled shapes) and `make test` (set up, then test).
# Set-up creates .venv/ when missing, installs the project editable with its test extra, and warms the
# numba and KeOps compilation caches once, in geom's per-user cache folder (geom/_cache.py: $GEOM_CACHE_DIR, else
# $XDG_CACHE_HOME/geom, else ~/.cache/geom; a KEOPS_CACHE_FOLDER of yours wins), the folder every
# plain `python -c "import geom; ..."` uses too; `make test` warms it before pytest starts, so tests never
# compile concurrently.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.geom-installed
# torch==2.13.0 resolves to the CPU build where one lies in pip's find-links (as on our machines);
# override for another build, e.g. `make test TORCH=torch==2.13.0+cu128`.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=
export MPLBACKEND := Agg

.PHONY: setup warm run test bench bench-scaling bench-schemes bench-learned bench-flows bench-energy bench-deform bench-collection bench-match bench-learn gpu-check lint clean

setup: $(STAMP) warm

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@bash .ci/system-deps.sh
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,open3d]"
	@$(BIN)/python -c "import open3d" 2>/dev/null && echo "open3d: importable" \
	  || echo "open3d: not importable here (needs libusb-1.0); geom works without it, .pcd falls back to the built-in reader"
	@touch $(STAMP)

# Every `make setup` and `make test`: about 3 s when warm; each KeOps formula compiled says so on stderr (about
# 10 s each); the numba sort kernels compile in about 5 s.
warm: $(STAMP)
	@$(BIN)/python -c "from geom._ot1d.kernels import warm; print('numba sort kernels ready:', warm())"
	@$(BIN)/python -c "from geom.reductions import warm_keops_cache as w; from geom._keops import build_folder as f; \
	  print('keops formulas ready:', len(w()), 'in', f())" \
	  || echo "KeOps could not compile here; reductions use the dense backend"

run: $(STAMP)
	$(BIN)/geom demo

test: warm
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python tools/bench.py

bench-scaling: $(STAMP)
	$(BIN)/python tools/scaling_bench.py

bench-schemes: $(STAMP)
	$(BIN)/python tools/schemes_bench.py

bench-learned: $(STAMP)
	$(BIN)/python tools/learned_bench.py

bench-flows: $(STAMP)
	$(BIN)/python tools/flows_bench.py

bench-energy: $(STAMP)
	$(BIN)/python tools/energy_bench.py

bench-deform: $(STAMP)
	$(BIN)/python tools/deform_bench.py

bench-collection: $(STAMP)
	$(BIN)/python tools/collection_bench.py

# pyfmaps (pyFM) is the external anchor of the match benchmark only: the `bench` extra.
bench-match: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python tools/match_bench.py

bench-learn: $(STAMP)
	$(BIN)/python tools/learn_bench.py

gpu-check: $(STAMP)
	$(BIN)/python tools/gpu_check.py

lint: $(STAMP)
	$(BIN)/ruff check geom plugins tools datasets tests

clean:
	rm -rf $(VENV) .cache build *.egg-info .pytest_cache .hypothesis

# The README's commands. `make demo` and `make test` work from a fresh clone
# with only Python 3.10+: they create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned: an open range pulls a multi-GB CUDA build. Elsewhere, point
# TORCH_INDEX at https://download.pytorch.org/whl/cpu to get the CPU wheel.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= dev,onnx,openvino
STAMP := $(VENV)/.installed
DEMO_SWEEP ?= sweeps/demo.toml
DEMO_REPORT ?= aigcbench-report.html
DEMO_PLAN_SWEEP ?= sweeps/demo-plan.toml
DEMO_PLAN ?= aigcbench-plan.html

# Dedicated environments (bench/interpreters.py): a backend whose runtime pins versions that clash with
# ours runs its cells in $(AIGCBENCH_ENVS)/NAME, made by `make env-NAME` from envs/NAME.txt.
AIGCBENCH_ENVS ?= $(or $(XDG_DATA_HOME),$(HOME)/.local/share)/aigcbench/envs
ENV_SPECS ?= envs

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip "setuptools>=77" wheel
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

# The main job: a small sweep (cells already stored are not measured again), then its report;
# then this machine's ceilings and one DDPM base cell, and the procurement plan they calibrate.
# A sweep exits 1 when a cell is failed or invalid; the report shows those cells, so the demo goes on.
demo: setup
	$(BIN)/aigcbench sweep $(DEMO_SWEEP) || [ $$? -eq 1 ]
	$(BIN)/aigcbench report --where sweep=demo -o $(DEMO_REPORT)
	$(BIN)/aigcbench calibrate
	$(BIN)/aigcbench sweep $(DEMO_PLAN_SWEEP) || [ $$? -eq 1 ]
	$(BIN)/aigcbench plan --workload ddpm --size base --demand 2000/h --slo-p99 5s -o $(DEMO_PLAN)

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m ""

bench: setup
	$(BIN)/python -m pytest benchmarks -q -p no:cacheprovider --benchmark-columns=min,median,mean,rounds -o addopts=""

# torch first, pinned (the CPU wheel); then this aigcbench (editable, no extras: the worker is our code)
# and the environment's own pins in one resolve, so pip settles them together.
.PRECIOUS: $(AIGCBENCH_ENVS)/%/.installed
env-%: $(AIGCBENCH_ENVS)/%/.installed
	@echo "environment $* ready: $(AIGCBENCH_ENVS)/$*/bin/python"

$(AIGCBENCH_ENVS)/%/.installed: $(ENV_SPECS)/%.txt pyproject.toml
	$(PYTHON) -m venv $(AIGCBENCH_ENVS)/$*
	$(AIGCBENCH_ENVS)/$*/bin/pip install --quiet --upgrade pip "setuptools>=77" wheel
	$(AIGCBENCH_ENVS)/$*/bin/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(AIGCBENCH_ENVS)/$*/bin/pip install --quiet -e . -r $(ENV_SPECS)/$*.txt "$(TORCH_SPEC)"
	$(AIGCBENCH_ENVS)/$*/bin/pip check
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info

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
DEMO_ARGS ?= --workload ddpm --backend pytorch --size base --steps 10 --duration 10 --json aigcbench-demo.json

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip "setuptools>=77" wheel
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: setup
	$(BIN)/aigcbench run $(DEMO_ARGS)

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m ""

bench: setup
	$(BIN)/python -m pytest benchmarks -q -p no:cacheprovider --benchmark-columns=min,median,mean,rounds -o addopts=""

clean:
	rm -rf $(VENV) build *.egg-info

# wrapcli: the two set-up commands are `make demo` and `make test` (README.md).
# TORCH_SPEC picks the torch build: the default is the CPU wheel (seconds to install
# here); a GPU user sets e.g. TORCH_SPEC='torch==2.13.0' TORCH_INDEX=https://download.pytorch.org/whl/cu128
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PRESET ?= cpu
OUT ?= out
BIN := $(VENV)/bin

.PHONY: install demo test test-all bench clean

$(BIN)/wrapcli: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/wrapcli

# The main job on the built-in default: pretrain counting (CPU preset), then evaluate
# the main operand a and the rarely seen operand b.
demo: install
	mkdir -p $(OUT)
	$(BIN)/wrapcli train --preset $(PRESET) --task count --log $(OUT)/pt_train.json -o $(OUT)/pt.safetensors
	$(BIN)/wrapcli eval $(OUT)/pt.safetensors --task count:a --task count:b -o $(OUT)/pt_eval.json

# Fast tier (what CI runs): everything but tests marked slow.
test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-all: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(OUT) .pytest_cache

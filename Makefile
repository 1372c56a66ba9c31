# trainspeed — the two commands a new user needs are `make demo` and `make test`;
# both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install demo train test test-slow test-all lint format lock clean benchmark benchmark-startup

install: $(STAMP)

$(STAMP): pyproject.toml scripts/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c scripts/constraints.txt -e ".[dev]"
	touch $(STAMP)

# the main job: which optimizer takes a wide MLP to 97% on the bundled digits fastest (30 runs, then the report
# with the differences that are real; conf/experiment/demo.yaml)
demo: $(STAMP)
	$(BIN)/python -m trainspeed.train experiment=demo $(ARGS)

train: $(STAMP)
	$(BIN)/python -m trainspeed.train $(ARGS)

# the suite without the long end-to-end sweeps (marked slow); `make test-slow` runs those, `make test-all` both
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

# transfer learning on the bundled digits: pretrain a backbone on digits 0-4 (once), then compare scratch /
# linear_probe / gradual / full on digits 5-9 (conf/experiment/transfer.yaml)
TRANSFER_WEIGHTS ?= outputs/pretrained/test_resnet.safetensors
.PHONY: transfer
transfer: $(STAMP)
	test -f $(TRANSFER_WEIGHTS) || PYTHON=$(BIN)/python OUT=$(TRANSFER_WEIGHTS) scripts/pretrain_backbone.sh
	$(BIN)/python -m trainspeed.train experiment=transfer model.weights=$(TRANSFER_WEIGHTS) $(ARGS)

benchmark: $(STAMP)
	$(BIN)/python scripts/benchmark_step.py $(ARGS)

# a one-step run, whole process, against `python -c "import torch, pytorch_lightning"` (median, ratio)
benchmark-startup: $(STAMP)
	$(BIN)/python scripts/benchmark_startup.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

lock: $(STAMP)
	( echo "# Pinned versions for 'make install' (pip install -c). Regenerate with 'make lock' after changing dependencies."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^trainspeed' | sort -f ) > scripts/constraints.txt

clean:
	rm -rf outputs/runs outputs/multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

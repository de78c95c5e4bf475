# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# The venv is (re)built only when pyproject.toml changes; a second run reuses it in seconds.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and on its own: the exact pin takes the local CPU wheel, never a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

# The main job on the embedded defaults: (1) raw video -> features -> UCLN -> ARGF -> report on the
# shipped GRID clips (data/corpus, CC BY 4.0); (2) the MOSI chain on the shipped bc-LSTM features
# (data/mosi, MIT): import -> UCLN x3 -> context features -> ARGF -> metrics on the honest-mosi valid split.
run: $(STAMP)
	$(BIN)/affectflow run data/corpus --dataset grid --out runs/grid
	$(BIN)/affectflow run --out runs/mosi

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench

clean-venv:
	rm -rf $(VENV)

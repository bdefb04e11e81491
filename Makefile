# windowner: `make demo` installs and runs the main job; `make test` installs and runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test test-all install dev glove bench accel plot lint accuracy clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-core: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[dev]"
	touch $@ $(VENV)/.stamp-core

install: $(VENV)/.stamp-core

dev: $(VENV)/.stamp-dev

demo: install
	$(BIN)/windowner train --config configs/adam.yaml

# The fast tier (what a developer runs after each change) skips tests marked slow and runs
# on every core (pytest-xdist); the slow tier's timing and signal tests want a quiet machine,
# so test-all (CI) runs serially.
test: dev
	$(BIN)/python -m pytest -m "not slow" -n auto

# Everything, slow tier included: what CI runs (after make lint).
test-all: dev
	$(BIN)/python -m pytest

lint: dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# Optional extras: never needed by the core or by CI.
glove: install
	$(PIP) install -e ".[glove]"

bench: install
	$(PIP) install -e ".[bench,glove]"
	$(BIN)/python benchmarks/bench_train.py --runs 4
	$(BIN)/python benchmarks/bench_e2e.py

# numba one-pass optimizer and row-sum kernels (equal to the numpy path; see README Speed)
accel: install
	$(PIP) install -e ".[accel]"

plot: install
	$(PIP) install -e ".[plot]"

accuracy: glove
	$(BIN)/python benchmarks/accuracy.py --seeds 0 1 2

# What each feature adds on top of the crf config (3 seeds per variant, ~45 CPU minutes).
.PHONY: accuracy-ablation accuracy-ensemble
accuracy-ablation: glove
	$(BIN)/python benchmarks/accuracy.py --ablation configs/conll03-sll.yaml --seeds 0 1 2

# configs/conll03.yaml with 9 seeds, and the ensembles of seeds 0-2, 3-5 and 6-8
accuracy-ensemble: glove
	$(BIN)/python benchmarks/accuracy.py --configs configs/conll03.yaml --seeds 0 1 2 3 4 5 6 7 8 --ensemble-size 3

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

# --- serve: the HTTP API and the page (optional extra) ---
.PHONY: serve
$(VENV)/.stamp-serve: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[serve]"
	touch $@ $(VENV)/.stamp-core

serve: $(VENV)/.stamp-serve
	$(BIN)/windowner serve

# --- spacy: the windowner_ner pipeline component (optional extra) ---
.PHONY: spacy
$(VENV)/.stamp-spacy: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[spacy]"
	touch $@ $(VENV)/.stamp-core

spacy: $(VENV)/.stamp-spacy
	$(BIN)/python -m pytest -q tests/test_spacy.py

# Hyperparameter sweeps (windowner sweep / compare): Optuna, Dask, and matplotlib for --png.
.PHONY: sweep
sweep: install
	$(PIP) install -e ".[sweep,plot]"

# --- gazetteer: LOC/PER/ORG/MISC lists from registry packages (optional extra) ---
# Prints the lists' sizes and licences and measures them against CoNLL-2003 train and dev.
.PHONY: gazetteer
CONLL03_DIR ?= ../shared/data/conll2003
$(VENV)/.stamp-gazetteer: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[gazetteer]"
	touch $@ $(VENV)/.stamp-core

gazetteer: $(VENV)/.stamp-gazetteer
	$(BIN)/python -m windowner.gazetteer $(CONLL03_DIR)/train.txt $(CONLL03_DIR)/valid.txt

# The sweep targets of issue 12 (2 workers vs 1; pruning vs none), ~10 minutes on 2 cores.
.PHONY: bench-sweep
bench-sweep: sweep
	$(BIN)/python benchmarks/bench_sweep.py

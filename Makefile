# Newcomer commands: `make train` (set up, then train the default Bi-LSTM on ATIS) and
# `make test` (set up, then lint and run the tests). ARGS passes Hydra overrides to train.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: setup train test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade -c constraints.txt -e '.[dev,sweeps,trackers,hf,serve]'
	touch $@

train: setup
	$(PY) scripts/train.py $(ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest -q -n auto --dist loadfile $(ARGS)

bench: setup
	$(PY) scripts/bench_rnn.py

clean:
	rm -rf outputs .pytest_cache .ruff_cache

# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/config.yaml

.PHONY: run test lint typecheck unit bench clean

$(BIN)/activate: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/activate

## Run logcap on the embedded default config: tails demo/logs into var/out (no Loki needed).
run: $(BIN)/activate
	$(BIN)/logcap run -c $(CONFIG)

## The whole suite: ruff, mypy, then pytest.
test: $(BIN)/activate lint typecheck unit

lint: $(BIN)/activate
	$(BIN)/ruff check logcap tests bench chaos

typecheck: $(BIN)/activate
	$(BIN)/mypy logcap

unit: $(BIN)/activate
	$(BIN)/pytest -q -ra $(PYTEST_ARGS)

bench: $(BIN)/activate
	$(BIN)/python bench/actor_chain.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

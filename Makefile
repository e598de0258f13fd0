# `make dev` and `make test` work from a fresh clone: both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint bench chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/provisio dev

test: $(STAMP)
	@# Installs what the suite needs where it can; a test whose tool is still missing skips by name.
	-$(BIN)/provisio doctor --install --tests
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

# N deployments on the embedded stack while the worker is SIGKILLed K times and PostgreSQL and
# Temporal restart once each; one JSON line, exit 1 unless nothing is stuck, duplicated or leaked.
N ?= 30
K ?= 5
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos --deployments $(N) --worker-kills $(K)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

clean:
	rm -rf $(VENV) var

# `make run` and `make test` work on a fresh machine: they build .venv from requirements.txt first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/.installed: requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

.PHONY: install run test lint
install: $(BIN)/.installed

run: install
	$(BIN)/python seed.py --if-empty
	$(BIN)/python -m server

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

# `make run` and `make test` work on a fresh machine: they build .venv first, `make run` with the
# runtime only (requirements.txt), `make test` with the test and dev tools too (requirements-dev.txt).
PY ?= python3
# The wire tier's hub server (mongoeco) needs Python 3.13; pyenv installs are looked up too.
PY313 ?= $(shell for p in $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3 python3.13; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/.installed: requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

.wirehub/bin/.installed: tests/wire/requirements.txt
	@if [ -z "$(PY313)" ]; then \
		echo "no Python 3.13 found: the wire tier runs only with MONGO_URI (or set PY313=...)"; \
	else \
		$(PY313) -m venv .wirehub && \
		.wirehub/bin/pip install --quiet --disable-pip-version-check -r tests/wire/requirements.txt && \
		touch $@; \
	fi

.PHONY: install install-dev wirehub run test lint typecheck mutation demo seed sync status ci-clean
install: $(BIN)/.installed

install-dev: $(BIN)/.installed-dev

wirehub: .wirehub/bin/.installed

run: install
	$(BIN)/python seed.py --if-empty
	$(BIN)/python -m server

test: install-dev wirehub
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n 2 --dist worksteal
	$(MAKE) --no-print-directory mutation

# What CI runs, on a clean clone of this checkout's HEAD (uncommitted changes are not in it).
ci-clean:
	rm -rf /tmp/coursesync-ci && git clone -q . /tmp/coursesync-ci && cd /tmp/coursesync-ci && CI=true bash .ci/run

# Mutation testing of the merge rule and the clock (settings in pyproject.toml); fails below 95 %.
mutation: install-dev
	rm -rf mutants
	SYNC_PROPERTY_EXAMPLES=60 $(BIN)/mutmut run --max-children 2 > mutants.log 2>&1 || (tail -c 2000 mutants.log; exit 1)
	$(BIN)/python tests/mutation_score.py

seed: install
	$(BIN)/python seed.py --if-empty

sync: install
	$(BIN)/flask --app server.api sync once

status: install
	$(BIN)/flask --app server.api sync status

# An embedded hub and two devices on this machine; an edit travels from one to the other.
demo: install
	scripts/demo.sh

lint: install-dev
	$(BIN)/ruff check .

# mypy over server/, seed.py and seed_mongo.py, with the settings in pyproject.toml.
typecheck: install-dev
	$(BIN)/mypy

# The two commands: `make run` and `make test`. Only Python is needed: everything else installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DJANGO_SETTINGS_MODULE := config.settings

.PHONY: run test lint bench install install-dev migrate

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamps make the install a no-op while the requirements files are unchanged.
$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/python manage.py migrate --noinput

run: migrate
	exec bin/run

# Serially: `PYTEST_ARGS="-n 2"` runs two pytest-xdist workers (tests/settings.py gives each its own Redis database).
test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Static checks: lint and import order, types, the direction of imports, no missing migration.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy core gateway projects apikeys usage config
	$(BIN)/lint-imports
	$(BIN)/python manage.py makemigrations --check --dry-run

# Load benchmarks (not part of the tests): PostgreSQL and Redis on 127.0.0.1, wrk + ab, and Node.js +
# npm for the peers (LiteLLM and Portkey install under bench/.peers/ on first use; BENCH_PEERS=0 skips them).
bench: install-dev
	@command -v wrk >/dev/null && command -v ab >/dev/null || apt-get install -y wrk apache2-utils
	$(BIN)/python bench/run.py

# Custody. `make run` starts it on its embedded defaults; `make test` runs the whole suite.
# Both honour DATABASE_URL and CELERY_BROKER_URL.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST_ARGS ?=
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test install install-dev lint typecheck migrations-check bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(PY)
	$(PIP) install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt sdk/pyproject.toml | $(PY)
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q -e ./sdk
	@if [ -f sdk/requirements-test.txt ]; then $(PIP) install -q -r sdk/requirements-test.txt; fi
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

run: install
	mkdir -p var
	DEBUG=$${DEBUG:-1} $(PY) manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(PY) manage.py collectstatic --noinput -v0
	DEBUG=$${DEBUG:-1} $(PY) manage.py serve

test: install-dev
	mkdir -p var
	$(PY) -m pytest tests sdk/tests $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install-dev
	$(VENV)/bin/mypy governance lineage

migrations-check: install-dev
	DEBUG=1 $(PY) manage.py makemigrations --check --dry-run

bench: install-dev
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

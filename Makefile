# make demo | make test | make lint | make bench. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,lint]'
	touch $(STAMP)

system-deps:
	./scripts/system-deps.sh

demo: $(STAMP) system-deps
	./scripts/demo.sh

test: $(STAMP) system-deps
	$(PY) -m pytest -q -n 2

lint: $(STAMP)
	$(VENV)/bin/ruff check airgap tests bench bundles scripts
	$(VENV)/bin/mypy

bench: $(STAMP) system-deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache

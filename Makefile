# make demo | make test | make lint | make bench | make kit | make lock.
# Each creates .venv and installs what it needs from requirements/dev.lock (pip --require-hashes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip install -q --disable-pip-version-check
# make kit [KIT_SIGN_KEY=key.pem] [PYTHON_VERSION=3.13] [PLATFORM=manylinux_2_28_aarch64]
KIT_SIGN_KEY ?=
PYTHON_VERSION ?=
PLATFORM ?=
UV_COMPILE := $(PY) scripts/kit/registry.py $(VENV)/bin/uv pip compile --quiet --universal \
	--python-version 3.11 --generate-hashes

.PHONY: demo test lint bench kit lock system-deps clean

$(STAMP): pyproject.toml requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes -r requirements/dev.lock
	$(PIP) --no-deps --no-build-isolation -e .
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

# The offline kit: dist/airgap-offline-VERSION-PYTAG-PLATFORM.tar.gz, built from HEAD.
KIT_ARGS := $(if $(KIT_SIGN_KEY),--sign-key $(KIT_SIGN_KEY)) \
	$(if $(PYTHON_VERSION),--python-version $(PYTHON_VERSION)) $(if $(PLATFORM),--platform $(PLATFORM))
kit: $(STAMP)
	$(PY) scripts/kit/build_kit.py --out dist $(strip $(KIT_ARGS))

# Refresh the locks from pyproject.toml (needs the package registry; isolated from pip.conf).
lock: $(STAMP)
	$(UV_COMPILE) -o requirements/runtime.lock pyproject.toml
	$(UV_COMPILE) -o requirements/dev.lock --all-extras pyproject.toml requirements/build.in

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache

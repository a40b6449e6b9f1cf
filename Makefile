# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the demo needs the package alone; the tests and tools need the test extras too
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed-test
# the documentation site needs the docs extra (also part of the test extra)
DOCS_STAMP := $(VENV)/.installed-docs
# editable as a plain path entry: the default mode's import hook runs at every interpreter
# start, the script's, the forkserver's and each Ray worker's; -qq hides setuptools' notice
# that this mode is transitional (errors still show)
EDITABLE := -qq --config-settings editable_mode=compat
# an editable install leaves our modules uncompiled, and with PYTHONDONTWRITEBYTECODE set
# (as on CI) every interpreter, the forkserver's too, would compile them again at import
COMPILE := $(BIN)/python -m compileall -q -j 0 actors runtime demos benchmarks
# likewise the methods that dataclasses and records compile from source as the runtime's
# modules load (actors/_compiled.py), kept next to the .pyc files: the script's side, then
# the actor side the forkserver loads
KEEP_METHODS := PYTHONDONTWRITEBYTECODE= $(BIN)/python -c "from runtime import Runtime; \
	from runtime.driver.import_heap import import_quietly as i; i('runtime.actor.bootstrap', None, None)"

.PHONY: demo test lint typecheck pytest docs bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml Makefile | $(VENV)/bin/python
	$(BIN)/python -m pip install $(EDITABLE) -e .
	$(COMPILE) >/dev/null
	$(KEEP_METHODS)
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml Makefile | $(VENV)/bin/python
	$(BIN)/python -m pip install $(EDITABLE) -e '.[test]'
	$(COMPILE) >/dev/null
	$(KEEP_METHODS)
	touch $(STAMP) $(DEMO_STAMP) $(DOCS_STAMP)

$(DOCS_STAMP): pyproject.toml Makefile | $(VENV)/bin/python
	$(BIN)/python -m pip install $(EDITABLE) -e '.[docs]'
	touch $(DOCS_STAMP) $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python -m demos.counter

test: lint typecheck pytest docs

lint: $(STAMP)
	$(BIN)/ruff check actors runtime demos tests benchmarks
	$(BIN)/ruff format --check actors runtime

typecheck: $(STAMP)
	$(BIN)/mypy --strict actors runtime

pytest: $(STAMP)
	$(BIN)/python -m pytest

# the site goes to site/; --strict turns every warning (a broken link or reference) into a
# failure. NO_MKDOCS_2_WARNING silences the theme's banner about its own end of life.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(COMPILE) >/dev/null
	$(KEEP_METHODS)
	$(BIN)/python -m benchmarks --json bench.json

clean:
	rm -rf $(VENV) build site *.egg-info .mypy_cache .ruff_cache .pytest_cache

# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the demo needs the package alone; the tests and tools need the test extras too
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed-test
# the documentation site needs the docs extra (also part of the test extra)
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: demo test lint typecheck pytest docs bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(DEMO_STAMP) $(DOCS_STAMP)

$(DOCS_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[docs]'
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
	$(BIN)/python -m benchmarks --json bench.json

clean:
	rm -rf $(VENV) build site *.egg-info .mypy_cache .ruff_cache .pytest_cache

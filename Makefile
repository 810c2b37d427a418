# polymm: two commands matter. `make demo` runs the whole system on the local sim; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test test-fast demo bench install-dev clean docs

# The venv is rebuilt when pyproject.toml changes, so a new dependency reaches every checkout.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install-dev: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Everything but the slow end-to-end tests: for the edit-test loop.
test-fast: $(STAMP)
	$(PY) -m pytest -m 'not slow and not systemd' $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m polymm.demo $(DEMO_ARGS)

bench: $(STAMP)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

# The config reference in README.md is generated from the schema so it cannot drift.
docs: $(STAMP)
	$(PY) tools/readme_config.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis

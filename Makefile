# Two targets do all setup on a fresh machine that has only Python: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-all install clean

$(STAMP): pyproject.toml plugins/examples/bregzoo-alpha/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	# the example third-party plugin, installed like any outside package; its tests run in `make test`
	$(BIN)/pip install -q -e ./plugins/examples/bregzoo-alpha
	touch $(STAMP)

install: $(STAMP)

## run: distill the embedded default task (analytic 8-Gaussian ring teacher) into a one-step student
run: $(STAMP)
	$(BIN)/bregzoo train

## test: the default test suite (slow tests excluded; `make test-all` includes them)
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

clean:
	rm -rf $(VENV)

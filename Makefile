# Two targets do all setup on a fresh machine that has only Python: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-all install clean

# Without a GPU (no nvidia-smi), torch and torchvision come from PyTorch's CPU index when it can be
# reached: a venv of about 1 GB instead of the 6 GB CUDA build. Otherwise (a GPU, an offline mirror,
# or TORCH_CPU_INDEX= on the command line) pip takes its default build, CUDA on x86_64 Linux.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

$(STAMP): pyproject.toml plugins/examples/bregzoo-alpha/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if [ -n "$(TORCH_CPU_INDEX)" ] && ! command -v nvidia-smi >/dev/null 2>&1 && \
	    $(BIN)/python -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" 2>/dev/null; then \
	  echo "no GPU found: installing torch's CPU build from $(TORCH_CPU_INDEX)"; \
	  $(BIN)/pip install -q torch torchvision --index-url $(TORCH_CPU_INDEX); \
	elif [ -n "$(TORCH_CPU_INDEX)" ] && ! command -v nvidia-smi >/dev/null 2>&1; then \
	  echo "no GPU found, but $(TORCH_CPU_INDEX) cannot be reached: pip's default torch build (CUDA on x86_64 Linux, about 6 GB)"; \
	fi
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

# `make demo` and `make test` set everything up on a fresh machine: a virtualenv in .venv with
# the package and the extras they need, then run. torch is pinned in pyproject.toml (CPU wheel).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install when the package's dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[train,export,dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/mcnn-appliance demo --workdir demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

clean:
	rm -rf demo .pytest_cache

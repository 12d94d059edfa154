# `make demo` and `make test` set everything up on a fresh machine: a virtualenv in .venv with
# the package and the extras they need, then run. torch is pinned in pyproject.toml (CPU wheel).
# `make test` also sets up .venv-runtime: the package WITHOUT extras, as a lab server installs it
# (no torch, no ONNX, no NNCF), plus the test runner; the runtime's tests run there a second time.
PYTHON ?= python3
VENV ?= .venv
RUNTIME_VENV ?= .venv-runtime
BIN := $(VENV)/bin
RUNTIME_BIN := $(RUNTIME_VENV)/bin

.PHONY: demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install when the package's dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[train,export,formats,dev]'
	touch $@

$(RUNTIME_BIN)/python:
	$(PYTHON) -m venv $(RUNTIME_VENV)

$(RUNTIME_VENV)/.installed: pyproject.toml | $(RUNTIME_BIN)/python
	$(RUNTIME_BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/mcnn-appliance demo --workdir demo

# Style, then the rooms' import contracts (pyproject.toml [tool.importlinter]).
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The whole suite with every extra (training's tests in a pytest process of their own: run after the
# export and full-resolution tests in one process, the pytest process itself died of SIGSEGV), then
# the runtime's tests where torch cannot be imported (MCNN_RUNTIME_ONLY=1 turns on the tests that
# check it is absent).
test: lint $(RUNTIME_VENV)/.installed
	$(BIN)/python -m pytest -q --ignore=tests/training
	$(BIN)/python -m pytest -q tests/training
	MCNN_RUNTIME_ONLY=1 $(RUNTIME_BIN)/python -m pytest -q tests/appliance

clean:
	rm -rf demo .pytest_cache $(VENV) $(RUNTIME_VENV)

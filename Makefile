# Two commands: `make demo` and `make test`. Each creates .venv when missing and installs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out

.PHONY: demo test test-fast install lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first and pinned: its CPU build lies on local disk; installing it before the project keeps any
# resolver from fetching a CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/workbench demo --out $(DEMO_DIR)

# both cores (CI has 2): one worker per core, each file on one worker (its module fixtures built once), one
# thread each so torch in two workers does not oversubscribe the cores
TEST_WORKERS ?= 2
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile tests

# the inner loop: everything but the tests that start a Flower simulation, JupyterLab, a notebook or a browser
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not integration" tests

lint: $(STAMP)
	$(BIN)/ruff check workbench federated tests
	$(BIN)/mypy

clean:
	rm -rf $(DEMO_DIR) .pytest_cache

# Two commands do everything on a fresh machine: `make bench` and `make test`.
# Each creates .venv when missing and (re)installs the project when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install bench test test-all clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The main job: the quick sweep on the embedded synthetic data, then the report.
bench: $(STAMP)
	$(BIN)/mindrec-bench sweep --suite quick
	$(BIN)/mindrec-bench report

# Fast default suite (slow tests excluded); `make test-all` runs everything.
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow"

clean:
	rm -rf results/runs results/report.* results/cache

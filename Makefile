# Two commands do everything on a fresh machine: `make bench` and `make test`.
# Each creates .venv when missing and (re)installs the project when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install bench test test-all gate gate-baseline asv asv-quick microbench clean

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

# Performance gate: a short sweep checked against the committed baseline.
GATE_BASELINE ?= results/baseline/gate-cpu.json
GATE_RUN := gate-$(shell date -u +%Y%m%dT%H%M%S)
# A suspected regression is measured once more and judged on both runs pooled, so a
# burst of load from a neighbour does not fail CI.
gate: $(STAMP)
	$(BIN)/mindrec-bench sweep --suite gate --run-id $(GATE_RUN)
	$(BIN)/mindrec-bench gate --baseline $(GATE_BASELINE) --run $(GATE_RUN) || { \
	  echo "gate: possible regression; measuring again to confirm"; \
	  $(BIN)/mindrec-bench sweep --suite gate --run-id $(GATE_RUN)-confirm && \
	  $(BIN)/mindrec-bench gate --baseline $(GATE_BASELINE) --run $(GATE_RUN) \
	    --run $(GATE_RUN)-confirm; }

# Re-measure the gate baseline on this machine (commit the result on its own).
gate-baseline: $(STAMP)
	$(BIN)/mindrec-bench sweep --suite gate --run-id $(GATE_RUN)
	$(BIN)/mindrec-bench baseline --run $(GATE_RUN) --out $(GATE_BASELINE)

# Regression tracking: build the current commit in its own virtualenv, benchmark, publish.
ASV := $(BIN)/asv
asv: $(STAMP)
	$(ASV) machine --yes
	$(ASV) run HEAD^! --show-stderr
	$(ASV) publish

# Quick look in .venv (working tree), filed under the current commit; clean trees only.
asv-quick: $(STAMP)
	$(ASV) machine --yes
	$(ASV) run --environment existing:$(abspath $(BIN))/python --set-commit-hash $$(git rev-parse HEAD) --quick --show-stderr
	$(ASV) publish

# Micro suites: save the run, fail on a confirmed median regression (first run = baseline).
microbench: $(STAMP)
	$(BIN)/python bench/micro/run.py $(if $(MICROBENCH_THRESHOLD),--threshold $(MICROBENCH_THRESHOLD))

clean:
	rm -rf results/runs results/report.* results/cache

# Two commands do everything on a fresh machine: `make bench` and `make test`.
# Each creates .venv when missing and (re)installs the project when pyproject.toml changes.
# `make install VENV=DIR` installs into another virtualenv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install bench test test-fast test-all gate gate-baseline asv asv-quick asv-machine microbench clean

# One line while pip works; its output goes to $(VENV)/install.log, whose end is shown
# when the install fails.
$(STAMP): pyproject.toml
	@echo "installing mindrec-bench and its dependencies into $(VENV) (first run: a few minutes)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@{ $(BIN)/python -m pip install --upgrade pip && \
	   $(BIN)/python -m pip install -e '.[test,peers]'; } > $(VENV)/install.log 2>&1 || { \
	  echo "install failed; the end of $(VENV)/install.log:"; \
	  tail -n 40 $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

# The main job: the quick sweep on the embedded synthetic data, then the report.
bench: $(STAMP)
	$(BIN)/mindrec-bench sweep --suite quick
	$(BIN)/mindrec-bench report

# The default suite (what CI runs): unit and integration tests, slow ones excluded;
# `make test-fast` is the edit loop (unit tests only, no subprocess sweeps or msrun
# jobs, on two pytest workers: 82 s here); `make test-all` runs everything.
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not slow and not integration"

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
asv: asv-machine
	$(ASV) run HEAD^! --show-stderr
	$(ASV) publish

# Quick look in .venv (working tree), filed under the current commit; clean trees only.
asv-quick: asv-machine
	$(ASV) run --environment existing:$(abspath $(BIN))/python --set-commit-hash $$(git rev-parse HEAD) --quick --show-stderr
	$(ASV) publish

# asv files results by machine, and `asv run` stops to ask about a machine it does not
# know (~/.asv-machine.json). Describe this one (named after its host) from the facts asv
# reads itself, without questions; asv's output is shown only if that fails.
asv-machine: $(STAMP)
	@out=$$($(ASV) machine --yes 2>&1) || { echo "$$out"; exit 1; }
	@echo "asv: machine $$(hostname), described in ~/.asv-machine.json"

# Micro suites: save the run, fail on a confirmed median regression (first run = baseline).
microbench: $(STAMP)
	$(BIN)/mindrec-bench microbench $(if $(MICROBENCH_THRESHOLD),--threshold $(MICROBENCH_THRESHOLD))

clean:
	rm -rf results/runs results/report.* results/cache

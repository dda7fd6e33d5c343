# The two Quick-start commands: `make demo` and `make test`. Each sets up .venv itself.
# `make test-fast` runs the suite without the tests marked slow (pyproject's pytest markers).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO ?= demo-tree

.PHONY: demo test test-fast clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# --no-compile: pip would byte-compile every file of every package (25 of its 55 s here);
	# Python compiles the modules a run imports on first use instead
	$(BIN)/python -m pip install -q --no-compile -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	rm -rf $(DEMO)
	$(BIN)/metricsduck demo $(DEMO) --runs 8 --seed 0
	$(BIN)/metricsduck init $(DEMO)
	$(BIN)/metricsduck refresh $(DEMO)
	$(BIN)/metricsduck drift $(DEMO) --run latest --tier ALERT --baseline previous_run
	$(BIN)/metricsduck trend $(DEMO) --run latest --direction decreasing
	$(BIN)/metricsduck rollup $(DEMO) --run latest --level stage
	$(BIN)/metricsduck rollup $(DEMO) --run latest --measure worst_item

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n auto --dist worksteal

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n auto --dist worksteal -m "not slow"

clean:
	rm -rf $(VENV) $(DEMO) *.egg-info

# Every target builds its own virtual environment, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench clean

# constraints.txt pins every package to the versions the suite last passed with.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -c constraints.txt
	touch $(STAMP)

PORT ?= 8080

run: $(STAMP)  ## the tour: sample services, the monitor, its page and rollouts (make run PORT=9000)
	@echo "crackseg-monitor is installed in $(VENV)/bin: type $(VENV)/bin/crackseg-monitor, or 'source $(VENV)/bin/activate' to put it on your PATH"
	$(VENV)/bin/crackseg-monitor demo --port $(PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples benchmarks tools
	$(VENV)/bin/ruff format --check src tests examples benchmarks tools
	$(VENV)/bin/mypy

test: lint  ## lint, types, then the whole suite
	$(PY) -m pytest -q

bench: $(STAMP)  ## figures into docs/performance.md (installs wrk and blackbox_exporter when root)
	-bash benchmarks/install_tools.sh
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test unit lint bench bench-versus clean system-deps

setup: $(STAMP)

$(STAMP): pyproject.toml .ci/constraints.txt
	@PYTHON=$(PYTHON) bash .ci/system-deps.sh venv
	@$(PY) -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c .ci/constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) main.py

test: system-deps $(STAMP)
	$(PY) -m pytest -m "not browser"
	$(PY) -m pytest --nbval --nbval-current-env --nbval-cell-timeout=120 --nbval-sanitize-with notebooks/sanitize.cfg notebooks
	$(PY) -m pytest -m browser tests/browser

unit: $(STAMP)
	$(PY) -m pytest -m "not browser"

lint: $(STAMP)
	$(PY) -m ruff check async_dag tests bench main.py examples
	$(PY) -m ruff format --check async_dag tests bench main.py examples
	$(PY) -m mypy
	$(PY) -m mypy main.py examples

bench: $(STAMP)
	$(PY) -m bench

# the engine against an earlier revision (default: the engine before run core v2)
BEFORE ?= 1df7f54
bench-versus: $(STAMP)
	$(PY) -m bench.versus $(BEFORE)

system-deps:
	@PYTHON=$(PYTHON) bash .ci/system-deps.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

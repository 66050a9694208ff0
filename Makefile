# marlkit's two set-up commands (see README):
#   make demo   -- create .venv if missing, install marlkit, run a short evolutionary training run
#   make test   -- create .venv if missing, install marlkit + dev tools, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q -c requirements/cpu.txt

.PHONY: demo test lint bench book clean

$(VENV)/.marlkit-installed: pyproject.toml requirements/cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev]"
	touch $@

install: $(VENV)/.marlkit-installed

demo: $(VENV)/.marlkit-installed
	$(PY) -m marlkit demo

test: $(VENV)/.marlkit-installed
	$(VENV)/bin/ruff check marlkit tests benchmarks book
	$(PY) -m pytest tests

lint: $(VENV)/.marlkit-installed
	$(VENV)/bin/ruff check marlkit tests benchmarks book

# The course book (Jupyter Book 1, offline): the notebooks with their stored outputs (none is run),
# the classroom guide and the API reference -> book/_build/html/index.html. See book/build.py.
book: $(VENV)/.marlkit-installed
	$(PY) book/build.py

bench: $(VENV)/.marlkit-installed
	$(PY) benchmarks/vec_env.py
	$(PY) benchmarks/networks.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs book/_build book/chapters book/api book/_offline

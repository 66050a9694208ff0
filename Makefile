# marlkit's two set-up commands (see README):
#   make demo   -- create .venv if missing, install marlkit, run a short evolutionary training run (MATD3,
#                  Simple Speaker Listener) that saves a fitness plot and the elite checkpoint
#   make test   -- create .venv if missing, install marlkit + dev tools, run the whole test suite
#   make solutions -- the notebooks with every exercise solved, for teachers: notebooks/solutions/NN_*.ipynb
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q -c requirements/cpu.txt
# The course notebooks under nbval: `make test` runs every notebooks/NN_*.ipynb top to bottom in quick mode
# (MARLKIT_QUICK=1) and compares each cell's output with the stored full-run output, except in cells tagged
# nbval-ignore-output. A new notebook is picked up without any edit here.
NBVAL  := -p no:cacheprovider --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg

.PHONY: demo test lint bench book solutions clean

$(VENV)/.marlkit-installed: pyproject.toml requirements/cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev]"
	touch $@

install: $(VENV)/.marlkit-installed

demo: $(VENV)/.marlkit-installed
	$(PY) -m marlkit train --preset speaker-listener --quick

test: $(VENV)/.marlkit-installed
	$(VENV)/bin/ruff check marlkit tests benchmarks book notebooks/*.py
	$(PY) -m pytest tests
	MARLKIT_QUICK=1 $(PY) -m pytest $(NBVAL) notebooks/[0-9]*.ipynb

lint: $(VENV)/.marlkit-installed
	$(VENV)/bin/ruff check marlkit tests benchmarks book notebooks/*.py

# The course book (Jupyter Book 1, offline): the notebooks with their stored outputs (none is run),
# the classroom guide and the API reference -> book/_build/html/index.html. See book/build.py.
book: $(VENV)/.marlkit-installed
	$(PY) book/build.py

# The solutions version of the course (git-ignored): every `# YOUR CODE HERE` stub replaced by its reference
# solution from marlkit.exercises; nothing is run. See notebooks/_solutions.py and book/classroom.md.
solutions: $(VENV)/.marlkit-installed
	$(PY) notebooks/_solutions.py

bench: $(VENV)/.marlkit-installed
	$(PY) benchmarks/vec_env.py
	$(PY) benchmarks/networks.py
	$(PY) benchmarks/train_off_policy.py
	$(PY) benchmarks/train_on_policy.py
	$(PY) benchmarks/speaker_listener_target.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs book/_build book/chapters book/api book/_offline notebooks/solutions

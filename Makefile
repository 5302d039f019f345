# Two commands do all set-up on a fresh machine (Python 3.11, pip, make):
#   make demo   -> runs the main job on the embedded CDNOW data
#   make test   -> runs the test suite (the same command CI runs)
# Both create .venv and install the locked dependencies on first use; later runs are quick.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench lint lock clean notebooks

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/clvtier demo --output-dir out

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

# everything, including the tests marked slow (full CDNOW runs, scale tests)
test-all: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_features.py
	$(PY) benchmarks/bench_btyd.py
	$(PY) benchmarks/bench_segment.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_score.py
	$(PY) benchmarks/bench_refit.py
	$(PY) benchmarks/bench_returns.py
	$(PY) benchmarks/bench_scale.py

# Re-run the notebooks on the full CDNOW data and save them with their outputs (about 3 minutes).
notebooks: $(STAMP)
	cd notebooks && for nb in *.ipynb; do \
	  ../$(PY) -c "import sys, nbformat; from nbclient import NotebookClient; b = nbformat.read(sys.argv[1], 4); \
	NotebookClient(b, timeout=1800, kernel_name='python3').execute(); nbformat.write(b, sys.argv[1])" $$nb || exit 1; \
	done

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

# Re-resolve the lock from pyproject.toml in a scratch environment.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -e ".[dev]"
	.venv-lock/bin/pip freeze --exclude-editable | grep -v '^clvtier' > requirements.lock.new
	echo "setuptools==$$(.venv-lock/bin/python -c 'import setuptools; print(setuptools.__version__)')" >> requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .venv-lock

clean:
	rm -rf $(VENV) out .pytest_cache

# Two commands matter: `make run` (the demo) and `make test`. Both install what they need first.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench clean

install: $(STAMP)

# torch goes first, pinned, so pip takes the local CPU wheel instead of a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(VENV)/bin/segflow run

# Two workers (pytest-xdist), a test module each at a time, the longest first (tests/conftest.py).
test: install
	$(PY) -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install
	$(PY) benchmarks/ingest.py

clean:
	rm -rf workspace .pytest_cache

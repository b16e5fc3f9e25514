# The two commands a new user needs (each does its own set-up first):
#   make app    launch PruneScope in the browser on the embedded default
#   make test   run the whole test suite (CI runs exactly this)
# Everything runs in the project environment that scripts/setup.sh creates.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: app test setup bench
app:
	@VENV=$(VENV) scripts/setup.sh
	$(PY) -m streamlit run app/main.py

test:
	@VENV=$(VENV) scripts/setup.sh --dev
	$(PY) -m pytest

bench:
	@VENV=$(VENV) scripts/setup.sh
	$(PY) bench/bench_engine.py

# The two commands a new user needs (each does its own set-up first):
#   make app    launch PruneScope in the browser on the embedded default
#   make test   run the whole test suite (CI runs exactly this)
PYTHON ?= python3

.PHONY: app test setup bench
app:
	@scripts/setup.sh
	$(PYTHON) -m streamlit run app/main.py

test:
	@scripts/setup.sh --dev
	$(PYTHON) -m pytest

bench:
	@scripts/setup.sh
	$(PYTHON) bench/bench_engine.py

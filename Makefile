# The two commands a newcomer needs: `make run` (demo end to end) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo
DEMO_DAY1 := 2026-11-20
DEMO_DAY2 := 2026-11-21

.PHONY: run test check-prereqs clean goldens bench package

$(BIN)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory check-prereqs
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

check-prereqs:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
	  || { echo "error: Python 3.11+ is needed as '$(PYTHON)' (override with make PYTHON=python3.12)"; exit 2; }
	@command -v java >/dev/null \
	  || { echo "error: Java 17 is needed for Spark (Debian: apt-get install openjdk-17-jre-headless)"; exit 2; }

## run: generate the two-day demo and reconcile both days on Spark local mode
run: $(BIN)/.installed
	$(BIN)/python -m recon.demo --out $(DEMO) --first-day $(DEMO_DAY1) --days 2
	$(BIN)/recon run --conf $(DEMO)/conf/pipeline.toml --date $(DEMO_DAY1)
	$(BIN)/recon run --conf $(DEMO)/conf/pipeline.toml --date $(DEMO_DAY2)
	@echo "Outputs: $(DEMO)/root/recon/$(DEMO_DAY1)/ and $(DEMO)/root/recon/$(DEMO_DAY2)/"
	@echo "  report.html and report.xlsx for analysts; discrepancies.csv, corrections.csv, open_items.csv, summary.json"

## test: the whole test suite (the same environment as `make run`)
test: $(BIN)/.installed
	$(BIN)/python -m pytest

## package: the wheel (driver hosts) and the --py-files zip (spark-submit) into dist/
package: $(BIN)/.installed
	$(BIN)/python -m recon.packaging --dist dist

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache dist

## goldens: regenerate golden files beside the sample statements (review the diff!)
goldens: $(BIN)/.installed
	$(BIN)/python -m tests.normalizers.regen_goldens

## bench: time the stages on generated data (BENCH_ARGS="--rows 10000000" for more)
BENCH_ARGS ?= --rows 1000000 --runs 3
bench: $(BIN)/.installed
	$(BIN)/python -m bench.run $(BENCH_ARGS)

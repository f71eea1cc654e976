# taskmill developer tasks. `make test` is what CI runs (through .ci/run).

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install whenever pyproject.toml changes; the stamp lives inside the venv so that
# deleting .venv also forgets it.
STAMP := $(VENV)/.install.stamp
EXTRAS := dev,postgres,mysql,web
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

# Only the directories that exist: benchmarks/ and examples/ may not be written yet.
CODE_DIRS := $(wildcard src tests benchmarks examples)

.DEFAULT_GOAL := test
.PHONY: venv .venv demo test lint format bench bench-quick bench-taskmill deadlock-proof chaos clean distclean browser-deps

venv .venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -e '.[$(EXTRAS)]'
	touch $@

demo: $(STAMP)
	$(BIN)/python examples/demo/run_demo.py

# The browser tests drive Debian's Chromium through Playwright (which never downloads a
# browser here). Installed when missing if we are root and have apt-get; otherwise the
# browser tests skip on a developer's machine and fail under CI=true.
CHROMIUM ?= /usr/bin/chromium

browser-deps:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "== installing chromium for the browser tests"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
		echo "note: $(CHROMIUM) is missing and cannot be installed here (needs root and" \
		     "apt-get): browser tests will skip (and fail under CI=true)"; \
	fi

test: $(STAMP) browser-deps
	$(BIN)/ruff check $(CODE_DIRS)
	$(BIN)/ruff format --check $(CODE_DIRS)
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check $(CODE_DIRS)
	$(BIN)/ruff format --check $(CODE_DIRS)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format $(CODE_DIRS)
	$(BIN)/ruff check --fix $(CODE_DIRS)

# taskmill side by side with its peers (pgqueuer, procrastinate, huey, rq, Celery) and
# the pure-SQL ceiling, in one run of < 15 min; the peers live in their own venv,
# benchmarks/.peers-venv, made on first use from benchmarks/peers/requirements.txt.
bench: $(STAMP)
	$(BIN)/python benchmarks/suite.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/suite.py --quick

# taskmill alone against pure SQL, with its variants and query plans (7-10 min)
bench-taskmill: $(STAMP)
	$(BIN)/python benchmarks/run.py

# MariaDB: 4 worker processes x 5,000 tasks (20,000), half queued while they drain;
# fails on any deadlock or a task not run exactly once (figures in benchmarks/RESULTS.md)
deadlock-proof: $(STAMP)
	TASKMILL_DEADLOCK_TASKS=5000 $(BIN)/pytest -s -p no:cacheprovider \
		tests/integration/test_mysql_no_deadlock.py

# The chaos suite at full size (10,000 tasks and 100 SIGKILLs per backend, every test on
# every backend); `make test` runs its short form. Figures go to docs/guarantees.md.
chaos: $(STAMP)
	TASKMILL_CHAOS=full $(BIN)/pytest tests/chaos -s -p no:cacheprovider

clean:
	rm -rf build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache \
	       demo-data benchmarks/out
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) benchmarks/.peers-venv

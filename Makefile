# Masar — the two commands are `make up` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# axe-core, for the console's accessibility checks (tests/console), from npm.
AXE    := .cache/npm/node_modules/axe-core/axe.min.js

.PHONY: up test lint format protos protos-check bench clean

# (Re)create the virtualenv whenever it is missing or pyproject.toml changed.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

up: $(STAMP)
	$(BIN)/masar up

test: $(STAMP) $(AXE)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Installed when npm is there; without it (or offline) the browser tests say
# what is missing: they skip, or fail in CI.
$(AXE):
	@if command -v npm >/dev/null 2>&1; then \
		npm install --prefix .cache/npm --no-audit --no-fund --silent axe-core@4 \
		|| echo "axe-core not installed (npm failed): console accessibility tests cannot run"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy masar services workflows console tests bench scripts

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

# Regenerates into a temporary tree and fails on any difference with masar/v1.
protos-check: $(STAMP)
	$(BIN)/python scripts/gen_protos.py --check

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .cache/npm

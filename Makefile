# Atoll: `make up` runs the platform, `make test` passes the tests. Both set themselves up.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: uv-ok system-ok help install up test test-unit lint format bench clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

uv-ok:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install -q "uv==$(UV_VERSION)"

system-ok:  # LightGBM's wheel links OpenMP (libgomp1, Debian); installed when run as root
	@ldconfig -p | grep -q 'libgomp\.so\.1' || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq libgomp1; } \
		|| { echo "LightGBM needs OpenMP: apt-get install -y libgomp1" >&2; exit 1; }

install: uv-ok system-ok  ## Install Python and npm dependencies from the lock files
	$(UV) sync --frozen
	npm ci --no-audit --no-fund --loglevel=error

up: install  ## Run Atoll at http://127.0.0.1:8000 (SQLite and data under .atoll/)
	$(UV) run atoll up

test: install  ## Run every test tier this machine can run (CI=true: all of them, or fail)
	bash scripts/test.sh

test-unit: install  ## Unit tier only (seconds)
	$(UV) run pytest tests/unit -q

lint: install  ## ruff + mypy + import-linter (architecture contracts in .importlinter)
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy -p atoll
	$(UV) run mypy --explicit-package-bases tests bench
	$(UV) run lint-imports

format: install  ## Apply ruff's fixes and formatting
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

bench: install  ## Benchmarks: each prints Atoll next to its anchor and the ratio
	@for b in bench/bench_*.py; do echo "== $$b"; $(UV) run python $$b || exit 1; done

clean:  ## Remove build outputs (keeps .atoll data)
	rm -rf build *.egg-info .venv node_modules web/static/vendor .pytest_cache .mypy_cache .ruff_cache .import_linter_cache

# Every target sets up what it needs; `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo-project
PATIENTS ?= 10000

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/migrate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(BIN)/migrate ## create the virtualenv with the package and its dev tools

.PHONY: demo
demo: venv ## build the sample legacy DB in $(DEMO)/ and migrate every service into the embedded target
	rm -rf $(DEMO)
	$(BIN)/migrate demo $(DEMO) --patients $(PATIENTS) --seed 1
	cd $(DEMO) && ../$(BIN)/migrate check
	cd $(DEMO) && ../$(BIN)/migrate run
	cd $(DEMO) && ../$(BIN)/migrate status

.PHONY: test
test: venv ## run the whole test suite
	$(BIN)/pytest -q -n 2 --dist loadfile

.PHONY: lint
lint: venv ## ruff lint and format check
	$(BIN)/ruff check migrate tests benchmarks
	$(BIN)/ruff format --check migrate tests benchmarks

.PHONY: format
format: venv ## apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix migrate tests benchmarks
	$(BIN)/ruff format migrate tests benchmarks

.PHONY: typecheck
typecheck: venv ## mypy --strict on the package
	$(BIN)/mypy

.PHONY: bench
bench: venv ## speed figures against baselines measured in the same run (bench-results/bench.json)
	$(BIN)/python -m benchmarks

.PHONY: check
check: lint typecheck test ## what CI runs: lint, types, tests

.PHONY: clean
clean: ## remove the virtualenv, the demo project and caches
	rm -rf $(VENV) $(DEMO) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# The two commands of README.md: `make run` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test setup lint format

run: setup
	$(BIN)/asterbill run

test: setup
	ops/scripts/ensure-services
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml $(wildcard admin/translations/*/LC_MESSAGES/*.po)
	ops/scripts/system-deps
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --config-settings editable_mode=compat -e .
	$(BIN)/pybabel compile --use-fuzzy -d admin/translations
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

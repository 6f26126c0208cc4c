# The two commands of README.md: `make run` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test setup lint format messages

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

# The strings of the code into var/messages.pot, and the msgids the Simplified Chinese catalog
# still lacks (add them to admin/translations/zh_Hans_CN/LC_MESSAGES/messages.po, translated;
# no `pybabel update`: column labels and value names are msgids the extraction cannot see).
messages: setup
	mkdir -p var
	$(BIN)/pybabel extract -F babel.cfg -k _l -k tr -k lazy_gettext -k lazy_pgettext:1c,2 -o var/messages.pot --no-location --omit-header .
	$(BIN)/pytest -q tests/test_chinese_everywhere.py -k catalog

# The two commands: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint format unit services browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.stamp-base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@ $(VENV)/.stamp-base $(VENV)/.stamp-demo

# What every README command needs: kalla serve and kalla worker (server), Excel and
# PostgreSQL sources. The other extras (mysql, s3, agent, nats, bench) are a pip away.
DEMO_EXTRAS ?= server,xlsx,postgres
$(VENV)/.stamp-demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[$(DEMO_EXTRAS)]'
	@touch $@ $(VENV)/.stamp-base

## make demo: install Kalla into .venv (with DEMO_EXTRAS) and reconcile a generated sample
demo: $(VENV)/.stamp-demo
	$(BIN)/kalla demo

## make test: install dev deps, check style and types, run the whole suite (all markers)
test: $(VENV)/.stamp-dev services browser lint
	$(BIN)/pytest -m "" -q

## make unit: the default suite, no services needed
unit: $(VENV)/.stamp-dev
	$(BIN)/pytest -q

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: $(VENV)/.stamp-dev
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

## make services: start PostgreSQL, MariaDB and NATS if they are down
services:
	@bash .ci/services

## make browser: Debian's chromium for the browser tests (Playwright drives it)
browser:
	@bash .ci/browser

## make bench: the benchmark table (see bench/README.md); SIZES=100k,1m FORMATS=parquet,csv
SIZES ?= 100k,1m
FORMATS ?= parquet,csv
RUNS ?= 3
bench: $(VENV)/.stamp-dev
	$(BIN)/kalla bench --sizes $(SIZES) --formats $(FORMATS) --runs $(RUNS)

clean:
	rm -rf $(VENV) staging kalla-demo .pytest_cache .mypy_cache .ruff_cache

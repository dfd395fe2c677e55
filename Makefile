# 链动小铺 Liandong — the two commands of the README, and their parts.
#   make run    start a local shop (embedded anvil, escrow and demo token deployed)
#   make test   every check and test: lint, types, forge, slither, pytest
# Both install what is missing first (toolchain/setup.sh), so a fresh clone needs nothing else.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(CURDIR)/.toolchain/bin:$(CURDIR)/.venv/bin:$(PATH)

.PHONY: run test setup lint typecheck forge-test slither pytest bench

run: setup
	liandong up

test: setup lint typecheck forge-test slither pytest

setup:
	@bash toolchain/setup.sh

lint:
	ruff check .
	ruff format --check .
	lint-imports --no-cache

typecheck:
	mypy

forge-test:
	forge test

slither:
	slither . --config-file slither.config.json

pytest:
	pytest

bench: setup
	python bench/gas_report.py
	python bench/import_keys.py
	python bench/delivery_latency.py --quick
	python bench/detection.py --quick
	python bench/chains.py --duration 5
	python bench/front_door.py --duration 2 --orders 200

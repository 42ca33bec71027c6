# Two entry points on a fresh machine: `make demo` and `make test`.
# Each creates .venv with the Python it finds and installs what it needs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ENV    ?= environments/local

.PHONY: demo demo-rollout test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

R := $(BIN)/reconciler

## The main job on the embedded backend: validate, test the models' behaviour, plan, apply, then show the devices.
demo: $(STAMP)
	$(R) validate $(ENV)
	$(R) test $(ENV)
	$(R) device $(ENV) add cam-a1 --exist-ok --tag environment=dev --tag site=a
	$(R) device $(ENV) add cam-a2 --exist-ok --tag environment=dev --tag site=a
	$(R) device $(ENV) add cam-b1 --exist-ok --tag environment=dev --tag site=b
	mkdir -p .reconciler
	$(R) plan $(ENV) --out .reconciler/demo-plan.json
	$(R) apply .reconciler/demo-plan.json
	$(R) device $(ENV) show cam-a1
	$(R) device $(ENV) show cam-b1
	$(R) plan $(ENV) --detailed-exitcode

## A staged rollout on simulated devices: a good scorer ring by ring to every device, then a
## broken one caught on the canary and rolled back (scripts/demo-rollout.sh).
demo-rollout: $(STAMP)
	bash scripts/demo-rollout.sh

## Lint, types, layering, the GitHub workflows (actionlint, zizmor) and the whole test suite.
test: $(STAMP)
	$(BIN)/ruff check reconciler tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/actionlint -shellcheck $(BIN)/shellcheck -pyflakes=
	$(BIN)/zizmor --offline --quiet .github
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/plan_scale.py
	$(BIN)/python benchmarks/behaviour.py

clean:
	rm -rf $(VENV) .reconciler

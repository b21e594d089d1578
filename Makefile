# account-guardrail: every command a developer or CI runs. `make help` lists them.
SHELL := /bin/bash
PYTHON := $(or $(shell command -v python3 2>/dev/null),python3)
PYTHON313 ?= $(firstword $(wildcard /root/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13 2>/dev/null))
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
PIP_FLAGS := -q --disable-pip-version-check
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
export PATH := $(dir $(PYTHON313)):$(PATH)

.PHONY: help demo test lint typecheck unit template build bench clean regional

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# First-run installs say what they install, roughly how long it takes, and how long it took
# (README, Development: measured times). Later runs skip them (the targets are files).
SINCE = start=$$(date +%s)
TOOK = echo "make: $(1) ready in $$(( $$(date +%s) - start )) s"

$(BIN)/guardrail: requirements-dev.txt pyproject.toml layers/guardrail_core/pyproject.toml
	@echo "make: installing $(VENV) (first run only: a few minutes, up to 16 on a busy machine): moto, boto3, Powertools, pytest,"
	@echo "      mypy, ruff, cfn-lint and SAM's translator from requirements-dev.txt, then the guardrail command"
	@$(SINCE); { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); } \
	  && $(BIN)/pip install $(PIP_FLAGS) -r requirements-dev.txt \
	  && $(BIN)/pip install $(PIP_FLAGS) --no-deps -e layers/guardrail_core -e . \
	  && $(call TOOK,$(VENV))
	@touch $@

$(SAM_VENV)/bin/sam: requirements-sam.txt
	@test -n "$(PYTHON313)" || { echo "python3.13 (the Lambda runtime's version) is needed for sam build"; exit 1; }
	@echo "make: installing $(SAM_VENV) (first run only: a few minutes): aws-sam-cli, for sam validate and sam build"
	@$(SINCE); { test -x $(SAM_VENV)/bin/python || $(PYTHON313) -m venv $(SAM_VENV); } \
	  && $(SAM_VENV)/bin/pip install $(PIP_FLAGS) -r requirements-sam.txt \
	  && $(call TOOK,$(SAM_VENV))
	@touch $@

$(CHECKOV_VENV)/bin/checkov: requirements-checkov.txt
	@echo "make: installing $(CHECKOV_VENV) (first run only: a few minutes): checkov, the template's security scanner"
	@$(SINCE); { test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV); } \
	  && $(CHECKOV_VENV)/bin/pip install $(PIP_FLAGS) -r requirements-checkov.txt \
	  && $(call TOOK,$(CHECKOV_VENV))
	@touch $@

demo: $(BIN)/guardrail  ## run the guardrail on a local stand-in account (no AWS account needed)
	$(BIN)/guardrail demo

test: lint typecheck template unit  ## install everything needed and run every check
	$(BIN)/guardrail demo > /dev/null
	$(BIN)/guardrail replay --json events/*.json > /dev/null
	@echo "make test: all checks passed"

lint: $(BIN)/guardrail  ## ruff
	$(BIN)/ruff check .

typecheck: $(BIN)/guardrail  ## mypy (strict) on the layer, the tools and each function
	$(BIN)/mypy
	@for app in functions/*/app.py; do $(BIN)/mypy --no-error-summary "$$app" || exit 1; done

template: $(BIN)/guardrail $(SAM_VENV)/bin/sam $(CHECKOV_VENV)/bin/checkov  ## cfn-lint, sam validate --lint, checkov, sam build
	$(BIN)/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --lint --template template.yaml
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml
	$(SAM_VENV)/bin/sam build --template template.yaml

unit: $(BIN)/guardrail  ## pytest (moto, offline)
	$(BIN)/pytest

regional: $(BIN)/guardrail  ## regenerate the forwarding StackSet's template from the home rules (after changing a forwarded rule)
	$(BIN)/python -m guardrail_cli.regional

build: $(SAM_VENV)/bin/sam  ## sam build (then: sam deploy --guided, in us-east-1)
	$(SAM_VENV)/bin/sam build --template template.yaml

# Cold starts are measured on the Lambda runtime's Python (3.13), with boto3 and Powertools
# pinned as in .venv: import costs differ between 3.11 and 3.13 by more than the budget's margin.
# pydantic and aws-xray-sdk are in the Powertools layer; the bench prices Parser and Tracer with them.
BENCH_VENV := .venv-bench
BENCH_PINS := boto3|botocore|aws_lambda_powertools|jmespath|s3transfer|urllib3|python-dateutil|six|typing_extensions|aws-xray-sdk|wrapt
BENCH_EXTRA := pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5

# Cloud Custodian (c7n pins its own boto3) runs the same events in the same run: bench/custodian.py.
C7N_VENV := .venv-c7n

$(C7N_VENV)/.installed: requirements-c7n.txt
	@echo "installing Cloud Custodian and moto into $(C7N_VENV) for the side-by-side (first run only, about 30 s)"
	@test -x $(C7N_VENV)/bin/python || $(PYTHON) -m venv $(C7N_VENV)
	$(C7N_VENV)/bin/pip install $(PIP_FLAGS) -r requirements-c7n.txt
	@touch $@

$(BENCH_VENV)/.installed: requirements-dev.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON313) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install $(PIP_FLAGS) $$(grep -iE '^($(BENCH_PINS))==' requirements-dev.txt) $(BENCH_EXTRA)
	@touch $@

bench: $(BIN)/guardrail $(SAM_VENV)/bin/sam $(BENCH_VENV)/.installed $(C7N_VENV)/.installed  ## benchmarks with budgets, side by side with Cloud Custodian (exit 1 when one is broken)
	$(SAM_VENV)/bin/sam build --template template.yaml > /dev/null
	GUARDRAIL_C7N_PYTHON=$(C7N_VENV)/bin/python $(BIN)/pytest -n 0 -q -p no:cacheprovider tests/test_bench.py::test_custodian_really_detaches_the_policy_and_alerts
	$(BIN)/python bench/run.py --cold-python $(BENCH_VENV)/bin/python --custodian-python $(C7N_VENV)/bin/python

clean:  ## remove virtualenvs and build output
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) $(BENCH_VENV) $(C7N_VENV) .aws-sam .mypy_cache .ruff_cache

# Two commands for a newcomer: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# A human-readable pace for the mock in `make run`; tests use 0.
MOCK_TOKEN_DELAY_MS ?= 30
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck check bench package build-StreamFunction build-BufferedFunction clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

run: $(STAMP)
	HOST=$(HOST) PORT=$(PORT) MOCK_TOKEN_DELAY_MS=$(MOCK_TOKEN_DELAY_MS) $(BIN)/python -m app

# Tools of the Lambda tests (the Runtime Interface Emulator from the aws-sam-cli wheel, Serverless v3 from
# npm), fetched once; a test whose tool is missing is skipped with the reason.
LAMBDA_TOOLS := $(VENV)/lambda-tools/.fetched
$(LAMBDA_TOOLS): $(STAMP) tests/lambda_/tools.py
	$(BIN)/python -m tests.lambda_.tools
	touch $@

test: $(STAMP) $(LAMBDA_TOOLS)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .

typecheck: $(STAMP)
	$(BIN)/python -m mypy

# Every benchmark at full size, each figure beside its baseline (BENCHMARKS.md says how to read them).
bench: $(STAMP)
	$(BIN)/python -m bench

# The Lambda artifact (arm64, python3.12), trimmed, with cold-path bytecode: dist/tokenrelay-lambda.zip.
package: $(STAMP)
	$(BIN)/python -m scripts.lambda_package

# `sam build` (template.yaml, BuildMethod: makefile) builds each function's code with these.
build-StreamFunction build-BufferedFunction: $(STAMP)
	$(BIN)/python -m scripts.lambda_package --out "$(ARTIFACTS_DIR)" --no-zip

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info

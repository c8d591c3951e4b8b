# Two commands for a newcomer: `make run` and `make test`. Both set up what they need on first use: a pinned
# uv in .tools/, then .venv installed from uv.lock (every dependency at the version the suite passed with).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# A human-readable pace for the mock in `make run`; tests use 0.
MOCK_TOKEN_DELAY_MS ?= 30

# The one tool installed before the lock can be read: uv itself, pinned, from PyPI with the Python you have.
UV_VERSION := 0.13.9
UV_HOME := .tools/uv-$(UV_VERSION)
UV := $(CURDIR)/$(UV_HOME)/bin/uv
STAMP := $(VENV)/.installed
# uv reads these: the environment it syncs, no Python downloads (the interpreter is yours), its own
# environment left alone by the scripts that find it through UV.
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
export UV
export PIP_ROOT_USER_ACTION := ignore

.PHONY: test-h11 bench-peers
.PHONY: run test lint typecheck check bench package lock fuzz test-newest-msgspec \
	build-StreamFunction build-BufferedFunction clean smoke

$(UV):
	$(PYTHON) -m pip install -qq --disable-pip-version-check --no-warn-script-location \
		--target $(UV_HOME) uv==$(UV_VERSION)

# --locked: a pyproject.toml edited without `make lock` fails here, instead of installing something untested.
$(STAMP): pyproject.toml uv.lock $(UV)
	$(UV) sync --quiet --locked --all-extras --python $(PYTHON)
	touch $(STAMP)

run: $(STAMP)
	HOST=$(HOST) PORT=$(PORT) MOCK_TOKEN_DELAY_MS=$(MOCK_TOKEN_DELAY_MS) $(BIN)/python -m app

# Re-resolve every dependency to the newest versions pyproject.toml allows, then `make test`.
# One package only: `make lock UPGRADE=--upgrade-package=msgspec`.
UPGRADE ?= --upgrade
lock: $(UV)
	$(UV) lock $(UPGRADE) --python $(PYTHON)

# Tools of the Lambda tests (the Runtime Interface Emulator from the aws-sam-cli wheel, Serverless v3 from
# tests/node's lock), fetched once; a test whose tool is missing is skipped with the reason.
LAMBDA_TOOLS := $(VENV)/lambda-tools/.fetched
$(LAMBDA_TOOLS): $(STAMP) tests/support/tools.py tests/node/package-lock.json
	$(BIN)/python -m tests.support.tools
	touch $@

# The browser the page tests drive: $$CHROMIUM, Debian's chromium, or Playwright's own download (tried
# once; it fails where browser downloads are blocked, and the browser tests are then skipped, saying how).
BROWSER := $(VENV)/.browser-checked
$(BROWSER): $(STAMP)
	$(BIN)/python -m tests.support.browser --fetch
	touch $@

test: $(STAMP) $(LAMBDA_TOOLS) $(BROWSER)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy
	@$(BIN)/python -m tests.support.browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The network tests (every one that serves the app with uvicorn) again on the other server stack: `make test`
# serves on uvloop + httptools (SERVER_STACK=fast, the default), this on asyncio + h11, the fallback.
NETWORK_TESTS := tests/app/http tests/providers/test_contract.py tests/app/test_logs.py
test-h11: $(STAMP) $(LAMBDA_TOOLS) $(BROWSER)
	SERVER_STACK=h11 $(BIN)/python -m pytest $(NETWORK_TESTS)

# The decoding tests again with the newest msgspec on PyPI (not the locked one), in a scratch environment:
# the invalid-UTF-8 classification must not depend on a msgspec release's exception class.
NEWEST := $(VENV)-newest
test-newest-msgspec: $(UV)
	UV_PROJECT_ENVIRONMENT=$(NEWEST) $(UV) sync --quiet --locked --all-extras --python $(PYTHON)
	$(UV) pip install --quiet --python $(NEWEST)/bin/python --upgrade msgspec
	$(NEWEST)/bin/python -c 'import msgspec; print("msgspec", msgspec.__version__)'
	$(NEWEST)/bin/python -m pytest -p no:cacheprovider tests/app/http/test_requests.py tests/app/http/test_validation.py tests/app/http/test_ws.py

# schemathesis, every check, against the served OpenAPI document (scripts/fuzz.py; loopback only).
FUZZ_EXAMPLES ?= 20
FUZZ_PORT ?= 18765
fuzz: $(STAMP)
	$(BIN)/python -m scripts.fuzz --port $(FUZZ_PORT) --examples $(FUZZ_EXAMPLES)

# One streaming request to a deployed URL (function URL, API Gateway stage, local server): did it stream?
# `make smoke URL=https://... [KEY=bearer-key] [GATEWAY_KEY=x-api-key]` (scripts/smoke.py); the keys go
# through the environment and the command is not echoed, so that they stay out of logs and `ps`.
smoke: $(STAMP)
	@test -n "$(URL)" || { echo "make smoke: set URL=https://... (the deployment's base URL)" >&2; exit 2; }
	@SMOKE_KEY="$(KEY)" SMOKE_GATEWAY_KEY="$(GATEWAY_KEY)" $(BIN)/python -m scripts.smoke "$(URL)"

# The page's vendored JavaScript, again from npm at the versions app/http/static/vendor/vendor.json pins,
# each tarball checked against its pinned sha512 (scripts/vendor.py; `--check` verifies offline).
.PHONY: vendor
vendor: $(STAMP)
	$(BIN)/python -m scripts.vendor

lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .

typecheck: $(STAMP)
	$(BIN)/python -m mypy

# Every benchmark at full size, each figure beside its baseline (BENCHMARKS.md says how to read them).
bench: $(STAMP)
	$(BIN)/python -m bench

# tokenrelay beside the LiteLLM proxy, FastAPI + sse-starlette and a bare ASGI app (bench/peers.py). LiteLLM
# gets a virtualenv of its own, at a pinned version, never in uv.lock; loopback only.
LITELLM_VERSION := 1.108.7
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.litellm-$(LITELLM_VERSION)
$(PEERS_STAMP): $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(PEERS_VENV)
	$(UV) pip install --quiet --python $(PEERS_VENV)/bin/python "litellm[proxy]==$(LITELLM_VERSION)"
	touch $@

bench-peers: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python -m bench.peers $(PEERS_ARGS)

# The Lambda artifact (arm64, python3.12), trimmed, with cold-path bytecode: dist/tokenrelay-lambda.zip.
package: $(STAMP)
	$(BIN)/python -m scripts.lambda_package

# `sam build` (template.yaml, BuildMethod: makefile) builds each function's code with these.
build-StreamFunction build-BufferedFunction: $(STAMP)
	$(BIN)/python -m scripts.lambda_package --out "$(ARTIFACTS_DIR)" --no-zip

clean:
	rm -rf $(VENV) $(NEWEST) $(PEERS_VENV) .tools .mypy_cache .ruff_cache .pytest_cache build *.egg-info

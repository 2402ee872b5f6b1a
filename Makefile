# S2S Relay. `make test` on a fresh clone creates .venv, installs everything and runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: install test lint unit integration local infra docs docs-serve validate build openapi events sam-env dev demo bench reliability screenshots clean
CONFIG ?= $(if $(wildcard relay.toml),relay.toml,relay.example.toml)

$(STAMP): pyproject.toml shared/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)   ## create .venv and install the project with its dev tools

lint: install       ## ruff (style, and the complexity gate) and the function-length gate for runtime code
	$(BIN)/ruff check .
	$(BIN)/python -m relay_tools.sizes shared/relay functions --max-lines 60

unit: install       ## unit tests: no I/O (vendor mappings, models, signing, the CLI's pure parts)
	$(BIN)/pytest tests/unit

integration: install  ## integration tests: the handlers and the ledger against moto, vendors behind httpx
	$(BIN)/pytest tests/integration

local: install      ## the local stack: moto's server built from template.yaml, the sandboxes, short soak and load
	$(BIN)/pytest tests/local

infra: install      ## the template (cfn-lint, sam validate --lint), sam build and its layer, the benchmark script
	$(BIN)/pytest tests/infra

docs: install       ## the documentation site: generated blocks checked (python docs/render.py renders them), mkdocs build --strict
	$(BIN)/python docs/render.py --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: install ## the documentation site on http://127.0.0.1:8000, rebuilt on change
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

validate: install   ## sam validate --lint (also run by the suite)
	$(BIN)/sam validate --lint

openapi: install    ## regenerate openapi.json from the models (a test fails when it drifts)
	$(BIN)/relay openapi --output openapi.json

events: install     ## regenerate the sam local invoke events in events/ (ingest.json is signed now)
	$(BIN)/relay lambda-event ingest events/samples/web_purchase.json events/samples/ios_app_purchase.json \
		--config relay.example.toml > events/ingest.json
	$(BIN)/relay lambda-event applovin events/samples/page_view.json events/samples/lead.json \
		events/samples/web_purchase.json --config relay.example.toml > events/sqs_applovin.json
	$(BIN)/relay lambda-event appsflyer events/samples/ios_app_purchase.json \
		events/samples/android_add_to_cart.json --config relay.example.toml > events/sqs_appsflyer.json
	$(BIN)/relay lambda-event adroll events/samples/page_view.json events/samples/b2b_demo_request.json \
		--config relay.example.toml > events/sqs_adroll.json

sam-env: install    ## regenerate env.local.json (sam local --env-vars, pointing at `make dev`)
	$(BIN)/relay sam-env --config relay.example.toml > env.local.json

dev: install        ## the whole relay on your machine until Ctrl-C (CONFIG=relay.toml by default if present)
	$(BIN)/relay dev --config $(CONFIG)

demo: install       ## start the local stack, send every sample, print event -> connection -> outcome, stop; then restricted mode, then two sources
	$(BIN)/relay demo --config $(CONFIG)
	$(BIN)/relay demo --config relay.restricted.example.toml --sample events/samples/restricted_lead.json
	$(BIN)/relay demo --config relay.connections.example.toml

bench: install      ## benchmarks: bench/results.json, bench/results.png and a table (LATENCY_MS=50 REPEAT=15)
	$(BIN)/python bench/run.py --latency-ms $${LATENCY_MS:-50} --repeat $${REPEAT:-15}
	$(BIN)/python docs/render.py

reliability: install  ## long form of the reliability suite (make test runs the short form): hostile input, soak, load, outages
	mkdir -p reliability
	HYPOTHESIS_PROFILE=long RELAY_MACHINE_RESULTS=reliability/state-machine.json $(BIN)/pytest tests/integration/test_hostile.py tests/integration/test_hostile_path.py \
		tests/integration/test_state_machine.py tests/infra/test_template.py -p no:cacheprovider
	$(BIN)/relay soak --events $${SOAK_EVENTS:-10000} --json reliability/soak.json
	$(BIN)/relay load --local --seconds $${LOAD_SECONDS:-60} --per-request 1 --json reliability/load-1.json
	$(BIN)/relay load --local --seconds $${LOAD_SECONDS:-60} --per-request 100 --concurrency 1 --json reliability/load-100.json
	$(BIN)/relay outage --hour-seconds $${OUTAGE_HOUR_SECONDS:-5} --json reliability/outage.json
	$(BIN)/relay outage --hour-seconds 3 --window-hours 3 --outage adroll=401:6 --json reliability/outage-window.json
	$(BIN)/relay outage --hour-seconds 3 --window-hours 3 --outage adroll=401:10 --traffic-hours 2 --json reliability/outage-silence.json
	$(BIN)/python docs/render.py

screenshots: install  ## the debugger page's screenshots in docs/images (a real headless Chromium against the local stack)
	RELAY_SCREENSHOTS=docs/images $(BIN)/pytest tests/local/test_debugger.py -k "events_appear or single_letter" -p no:cacheprovider -q

BUILD_DIR ?= .aws-sam/build
build: install      ## relay config check of shared/connections.toml, sam build (python3.13, arm64 layer) + bytecode (docs/development.md)
	@if [ -f shared/connections.toml ]; then $(BIN)/relay config check --deployed shared/connections.toml; fi
	PYENV_VERSION=$${PYENV_VERSION:-3.11.7:3.13.0} $(BIN)/sam build --build-dir $(BUILD_DIR)
	@# Lambda's /opt and /var/task are read-only: without shipped bytecode every cold start compiles
	@# every module it imports. Hash-checked .pyc stay valid whatever mtimes the zip gives the sources.
	PYENV_VERSION=$${PYENV_VERSION:-3.11.7:3.13.0} python3.13 -m compileall -q -f -j 0 --invalidation-mode checked-hash $(BUILD_DIR)

test: lint docs unit integration local infra  ## what CI runs (.ci/run): every tier

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .aws-sam .site

# The front door. `make run` serves the gateway; `make test` runs the whole suite.
CARGO ?= cargo

.PHONY: run run-sim run-nats test lint fmt openapi schemas check-openapi check-schemas bench ci

## Run the gateway with the embedded defaults (listen 127.0.0.1:3000, data dir ./data,
## the real WhatsApp engine).
run:
	$(CARGO) run --release --bin wa-gateway -- serve

## Run with the simulated WhatsApp network, instances auto-paired (demos, the seed's examples).
run-sim:
	WA_ENGINE=sim WA_SIM_AUTO_PAIR=true $(CARGO) run --release --bin wa-gateway -- serve

## Run on the NATS JetStream backbone: a local `nats-server -js` (nats/nats-server.conf,
## JetStream store in ./data/nats, port NATS_PORT) and the gateway against it; Ctrl-C stops both.
NATS_SERVER ?= $(shell command -v nats-server 2>/dev/null || echo /usr/sbin/nats-server)
NATS_PORT ?= 4222
run-nats:
	@test -x "$(NATS_SERVER)" || { echo "nats-server not found: apt-get install nats-server (or set NATS_SERVER=/path/to/nats-server)"; exit 1; }
	@mkdir -p data/nats
	@"$(NATS_SERVER)" -c nats/nats-server.conf -p $(NATS_PORT) & nats_pid=$$!; \
	trap 'kill $$nats_pid 2>/dev/null' EXIT INT TERM; \
	WA_NATS_URL=nats://127.0.0.1:$(NATS_PORT) $(CARGO) run --release --bin wa-gateway -- serve

## The whole test suite (unit and integration; integration tests start their own nats-server).
test:
	$(CARGO) test --all-targets --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Regenerate the committed OpenAPI document.
openapi:
	$(CARGO) run --quiet --bin wa-gateway -- openapi --out openapi/openapi.json

## Regenerate the committed JSON Schemas of the events.
schemas:
	rm -f schemas/*.json
	$(CARGO) run --quiet --bin wa-gateway -- schemas --out schemas

check-openapi:
	@mkdir -p target
	$(CARGO) run --quiet --bin wa-gateway -- openapi --out target/openapi.check.json
	diff -u openapi/openapi.json target/openapi.check.json || (echo "openapi/openapi.json is out of date: run make openapi" && exit 1)

check-schemas:
	rm -rf target/schemas.check
	$(CARGO) run --quiet --bin wa-gateway -- schemas --out target/schemas.check
	diff -ru schemas target/schemas.check || (echo "schemas/ is out of date: run make schemas" && exit 1)

## Benchmarks: print figures (release build). The real-engine benchmark is an example:
## it needs the fake WhatsApp server, which only the test profile may build (see README).
bench:
	$(CARGO) run --release --bin wa-bench
	$(CARGO) run --release --example real_engine_bench

ci:
	bash .ci/run

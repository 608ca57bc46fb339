# remora — the few commands a developer and CI need.
SHELL := /bin/bash
GO ?= go
TESTENV_DIR ?= /tmp/remora-testenv

.PHONY: all build test test-short test-long testenv testenv-stop proto bench vet fmt demo

all: build

build:
	$(GO) build ./...

# test installs and starts the real servers the integration tests need
# (idempotently), runs every test with the race detector, and stops what it
# started. REMORA_REQUIRE_SERVERS=1 turns "server missing" skips into failures.
test: testenv
	@set -o pipefail; status=0; \
	REMORA_REQUIRE_SERVERS=1 REMORA_TESTENV=$(TESTENV_DIR) $(GO) test -race -timeout 40m ./... || status=$$?; \
	$(MAKE) --no-print-directory testenv-stop; exit $$status

# test-long runs the full-size versions the suite runs small: the chaos
# suite with 10,000 messages (TestChaos runs 300 in `make test`). Set
# REMORA_CHAOS_SEED to replay a run.
test-long: testenv
	@set -o pipefail; status=0; \
	REMORA_CHAOS_MESSAGES=10000 REMORA_CHAOS_SPAN=15m REMORA_REQUIRE_SERVERS=1 REMORA_TESTENV=$(TESTENV_DIR) \
	$(GO) test -race -count=1 -timeout 90m -run '^TestChaos$$' -v ./cmd/remora || status=$$?; \
	$(MAKE) --no-print-directory testenv-stop; exit $$status

# test-short runs unit tests only; integration tests skip with a message.
test-short:
	$(GO) test -short -race ./...

# testenv installs (idempotently) and starts every real server the tests use;
# it writes their addresses to $(TESTENV_DIR)/env, which the tests read.
testenv:
	bash testenv/up.sh $(TESTENV_DIR)

testenv-stop:
	bash testenv/down.sh $(TESTENV_DIR)

# proto regenerates the adapter wire code; the result is committed and this
# must produce no diff.
proto:
	bash sdk/internal/wire/gen.sh

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

vet:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt needed"; exit 1)

demo:
	$(GO) run ./cmd/remora demo

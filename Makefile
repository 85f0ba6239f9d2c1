# pubsublock: run `make help` for the targets.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Debian packages the tests need: redis-server and redis-cli, and the Python
# reference client for the interoperability tests.
TEST_PACKAGES := redis-server redis-tools python3-portalocker python3-redis
# The python3 that Debian's python3-portalocker and python3-redis install for.
PYTHON := /usr/bin/python3

# The packages whose tests start real servers, which test-servers runs again
# against each of Debian trixie's servers. Their subtests on miniredis do not
# depend on the server and ran in make test already.
SERVER_TEST_PKGS := . ./internal/redistest ./cmd/...
SERVER_TEST_SKIP := /^miniredis$$

FUZZTIME ?= 30s
BENCHCOUNT ?= 1
STATICCHECK_VERSION ?= v0.8.2
# Where go install puts staticcheck: GOBIN, or the first GOPATH entry's bin.
GOBIN := $(or $(shell go env GOBIN),$(firstword $(subst :, ,$(shell go env GOPATH)))/bin)
STATICCHECK := $(GOBIN)/staticcheck

.PHONY: help deps test test-servers chaos fuzz bench lint demo

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## Install redis-server, redis-cli and the Python reference client if missing (needs root)
	@if command -v redis-server >/dev/null && command -v redis-cli >/dev/null && \
	    $(PYTHON) -c 'import portalocker, redis' >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(TEST_PACKAGES); \
	else \
	  echo "The tests need $(TEST_PACKAGES). Install them with:" >&2; \
	  echo "  sudo apt-get install -y $(TEST_PACKAGES)" >&2; \
	  exit 1; \
	fi

test: deps ## Run every test with the race detector (starts its own servers on free ports)
	@echo "go test -race -count=1 -timeout 15m ./...  (a dot per test that passed; failures in full)"
	@go test -race -count=1 -timeout 15m -json ./... | awk -f .ci/progress.awk
	@if [ -f bench/go.mod ]; then \
	  echo "cd bench && go test -race -count=1 ./..."; \
	  cd bench && go test -race -count=1 ./...; \
	fi

test-servers: deps ## Run the real-server tests against Redis 8.0 and Valkey 8.1 from Debian trixie (.ci/trixie-servers; its first run needs root)
	@servers=$$(.ci/trixie-servers); \
	failed=""; \
	while read -r name server cli; do \
	  echo "=== $$name: $$("$$server" --version)"; \
	  echo "PUBSUBLOCK_REDIS_SERVER=$$server PUBSUBLOCK_REDIS_CLI=$$cli go test -race -count=1 -timeout 15m -skip '$(SERVER_TEST_SKIP)' $(SERVER_TEST_PKGS)"; \
	  start=$$SECONDS; \
	  if PUBSUBLOCK_REDIS_SERVER=$$server PUBSUBLOCK_REDIS_CLI=$$cli go test -race -count=1 -timeout 15m -skip '$(SERVER_TEST_SKIP)' $(SERVER_TEST_PKGS) </dev/null; then \
	    echo "=== $$name: passed in $$((SECONDS - start))s"; \
	  else \
	    echo "=== $$name: FAILED after $$((SECONDS - start))s"; \
	    failed="$$failed $$name"; \
	  fi; \
	done <<< "$$servers"; \
	if [ -n "$$failed" ]; then echo "test-servers: failed on$$failed" >&2; exit 1; fi

chaos: deps ## Fault-injection proof (internal/chaos): 20000 acquisitions, or CHAOS_DURATION=60s; CHAOS_SEED, CHAOS_FAULTS
	PUBSUBLOCK_CHAOS=1 go test -race -count=1 -timeout 30m -run '^TestChaos$$' -v ./internal/chaos

fuzz: ## Run each fuzz target of each package for FUZZTIME (default 30s)
	@targets=$$(go test -list '^Fuzz' ./... | \
	  awk '/^Fuzz/ {names = names " " $$1; next} /^ok / {n = split(names, f, " "); for (i = 1; i <= n; i++) print $$2, f[i]; names = ""}'); \
	if [ -z "$$targets" ]; then echo "no fuzz targets"; exit 0; fi; \
	while read -r pkg name; do \
	  corpus="$$(go list -f '{{.Dir}}' "$$pkg")/testdata/fuzz/$$name"; \
	  before=$$(ls "$$corpus" 2>/dev/null | wc -l || true); \
	  echo "go test -run '^$$' -fuzz '^$$name\$$' -fuzztime $(FUZZTIME) $$pkg"; \
	  if go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$pkg" </dev/null 2>&1 | tee /tmp/fuzz-$$name.log; then continue; fi; \
	  after=$$(ls "$$corpus" 2>/dev/null | wc -l || true); \
	  if [ "$$after" = "$$before" ] && tail -6 /tmp/fuzz-$$name.log | grep -q '^    context deadline exceeded$$'; then \
	    echo "fuzz: $$name: no failing input; this is Go 1.26's fuzz coordinator race at the -fuzztime deadline (go.dev/issue/75804, fixed in Go 1.27), not a failure"; \
	    continue; \
	  fi; \
	  exit 1; \
	done <<< "$$targets"

bench: ## Run the benchmarks BENCHCOUNT times (default 1), then the bench/ comparison if present
	go test -run '^$$' -bench . -benchmem -count=$(BENCHCOUNT) ./...
	@if [ -f bench/go.mod ]; then \
	  echo "cd bench && go run . -count=$(BENCHCOUNT)"; \
	  cd bench && go run . -count=$(BENCHCOUNT); \
	fi

lint: ## Check formatting (gofmt), go vet and staticcheck
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt -l: these files need gofmt -w:" >&2; echo "$$unformatted" >&2; exit 1; fi
	go vet ./...
	@if [ ! -x "$(STATICCHECK)" ]; then \
	  echo "go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)"; \
	  go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); \
	fi
	$(STATICCHECK) ./...
	@if [ -f bench/go.mod ]; then \
	  echo "cd bench && go vet ./... && staticcheck ./..."; \
	  cd bench && go vet ./... && $(STATICCHECK) ./...; \
	fi

demo: ## Run the demo (examples/demo)
	go run ./examples/demo

# Private Connect — build, run and test.
#   make run    build everything and start the all-in-one dev node (bin/pcd dev)
#   make test   the whole test suite (what CI runs)

GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
GOFLAGS  ?=
DATA     ?= ./data
# Test timeout; the race detector makes the suite slower.
TEST_TIMEOUT ?= 20m

.PHONY: all build run test test-short check vet fmt-check bench clean ci

all: build

-include plugins/plugins.mk

build: plugins
	$(GO) build $(GOFLAGS) -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/pcd ./cmd/connect $(wildcard ./cmd/pcbench)

run: build
	$(BIN)/pcd dev --data $(DATA)

# The whole suite: unit, integration, end-to-end (real binaries), plugin builds.
test: build wat
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	# Allocation pins skip under -race (it changes the counts): run them without.
	$(GO) test -count=1 -run 'Alloc' ./plugins/ ./plugins/builtin/ ./bench/ ./internal/tunnel/

# A faster loop while developing.
test-short: plugins
	$(GO) test -short -count=1 ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# What CI runs, plus static checks.
check: fmt-check vet test

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./plugins/... ./edge/... ./internal/...

clean:
	rm -rf $(BIN)

# Long runs of the reliability tests (internal/e2e, issue #8), real processes:
#   make soak    10 minutes of mixed load (HTTP, TCP, config changes, agent restarts);
#                goroutines, heap and private RSS may not grow over 10% after warm-up
#                (the control plane's RSS may grow by Badger's memtable and caches)
#   make chaos   kill -9 / SIGTERM faults with the control plane down for minutes,
#                full disk, Badger crash recovery, rolling restarts, hostile input
# `make test` runs the same tests in their short form (20 s soak, 2 s control outage).
SOAK_DURATION      ?= 10m
CHAOS_CONTROL_DOWN ?= 3m

.PHONY: soak chaos

soak: plugins
	PC_SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -timeout 30m -run '^TestSoak$$' -v ./internal/e2e/

chaos: plugins
	PC_CHAOS_CONTROL_DOWN=$(CHAOS_CONTROL_DOWN) PC_CHAOS_ROUNDS=3 $(GO) test -count=1 -timeout 30m -v \
		-run '^(TestFault|TestGraceful|TestChaos|TestHostile|TestSecretsAtRest)' ./internal/e2e/

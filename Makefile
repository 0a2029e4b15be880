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

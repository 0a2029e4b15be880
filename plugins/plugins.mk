# plugins/plugins.mk: Wasm builds for the plugin host, included from the top-level Makefile.
#
#   make plugins   built-in plugins -> plugins/builtin/wasm/<name>.wasm (embedded in pcd)
#   make wat       .wat test guests -> plugins/testdata/wat/<name>.wasm (needs wat2wasm, Debian wabt)
#   make plugin-examples   sdk/examples/* -> sdk/examples/<name>/<name>.wasm
#
# Targets are files with their Go sources as prerequisites, so rebuilds are incremental. The
# top Makefile can depend on $(PLUGINS_WASM) (e.g. build: $(PLUGINS_WASM)) or on `plugins`.

GO ?= go
WAT2WASM ?= wat2wasm
PLUGINS_GOFLAGS ?= -buildmode=c-shared -trimpath -ldflags=-s
PLUGINS_GOENV := GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0

PLUGINS_DIR := plugins/builtin
PLUGINS_NAMES := $(notdir $(patsubst %/main.go,%,$(wildcard $(PLUGINS_DIR)/*/main.go)))
PLUGINS_WASM := $(PLUGINS_NAMES:%=$(PLUGINS_DIR)/wasm/%.wasm)
# Every built-in depends on the SDK and on the policies in internal/ (the bundle holds them
# all; a standalone module only its own, but rebuilding all of them on a change is cheap).
PLUGINS_SDK_SRC := $(wildcard sdk/plugin/*.go sdk/plugin/internal/*/*.go $(PLUGINS_DIR)/internal/*/*.go) go.mod

WAT_SRC := $(wildcard plugins/testdata/wat/*.wat)
WAT_WASM := $(WAT_SRC:.wat=.wasm)

PLUGIN_EXAMPLES := $(patsubst %/main.go,%,$(wildcard sdk/examples/*/main.go))
PLUGIN_EXAMPLES_WASM := $(foreach d,$(PLUGIN_EXAMPLES),$(d)/$(notdir $(d)).wasm)

.PHONY: plugins wat plugin-examples plugins-clean

plugins: $(PLUGINS_WASM)

$(PLUGINS_DIR)/wasm/%.wasm: $(PLUGINS_DIR)/%/*.go $(PLUGINS_SDK_SRC)
	$(PLUGINS_GOENV) $(GO) build $(PLUGINS_GOFLAGS) -o $@ ./$(PLUGINS_DIR)/$*

wat: $(WAT_WASM)

plugins/testdata/wat/%.wasm: plugins/testdata/wat/%.wat
	$(WAT2WASM) $< -o $@

plugin-examples: $(PLUGIN_EXAMPLES_WASM)

.SECONDEXPANSION:
$(PLUGIN_EXAMPLES_WASM): $$(dir $$@)*.go $(PLUGINS_SDK_SRC)
	$(PLUGINS_GOENV) $(GO) build $(PLUGINS_GOFLAGS) -o $@ ./$(dir $@)

plugins-clean:
	rm -f $(PLUGINS_WASM) $(WAT_WASM) $(PLUGIN_EXAMPLES_WASM)

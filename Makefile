# vault-plugin-secrets-metakraftwerk
#
#   make demo    build, bring up a local Vault + stand-in MetaKraftwerk, take the tour, tear down
#   make test    unit tests (vet, gofmt, -race) and the end-to-end suite on a real vault binary
#                (and on OpenBao too when a bao binary is found)
#
# Everything else is below; `make help` lists it.

SHELL        := /usr/bin/env bash
.SHELLFLAGS  := -euo pipefail -c
.DEFAULT_GOAL := help

MODULE       := github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk
PLUGIN       := vault-plugin-secrets-metakraftwerk
VERSION      ?= v0.1.0-dev
LDFLAGS      := -s -w -X $(MODULE).Version=$(VERSION)
GO           ?= go
BIN          := $(CURDIR)/bin
DIST         := $(CURDIR)/dist
FUZZTIME     ?= 30s
E2E_TIMEOUT  ?= 25m
RELEASE_PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
# The server the local stack (demo, up, bench) runs on: vault or openbao.
PLATFORM     ?= vault
# The e2e platforms (vault, vault-lts, openbao); empty means vault, plus
# openbao when a bao binary is found. Named platforms are required.
E2E_PLATFORMS ?=

export VERSION PLATFORM

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: build
build: ## build the plugin and the stand-in server into bin/ (version stamped)
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/$(PLUGIN) ./cmd/$(PLUGIN)
	$(GO) build -trimpath -o $(BIN)/metakraftwerk-devserver ./cmd/metakraftwerk-devserver

.PHONY: vault
vault: ## print the vault binary used (builds Vault v1.21.0 into a cache the first time)
	@scripts/vault-bin.sh

.PHONY: unit
unit: ## go vet, gofmt check, unit tests with -race (fuzz seeds included)
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [[ -n $$unformatted ]]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) test -race -count=1 ./...

E2E_ENV = PLUGIN_BIN="$(BIN)/$(PLUGIN)" PLUGIN_VERSION="$(VERSION)" GO="$(GO)" E2E_TIMEOUT="$(E2E_TIMEOUT)"

.PHONY: e2e
e2e: build ## end-to-end suite on Vault v1.21.0, plus OpenBao when a bao binary is found
	$(E2E_ENV) scripts/e2e.sh $(E2E_PLATFORMS)

.PHONY: e2e-matrix
e2e-matrix: build ## end-to-end suite on Vault v1.21.0, Vault v1.19.0 (LTS) and OpenBao; fails unless all ran
	$(E2E_ENV) scripts/e2e.sh vault vault-lts openbao

.PHONY: e2e-ha
e2e-ha: build ## only the 3-node raft cluster failover test (also part of e2e)
	$(E2E_ENV) E2E_RUN=TestHAClusterFailover scripts/e2e.sh $(E2E_PLATFORMS)

.PHONY: test
test: unit e2e ## unit + end-to-end (what CI runs)

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	@for pkg in . ./internal/mkclient; do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$target ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

.PHONY: demo
demo: build ## the guided tour on a local stack (PLATFORM=openbao for OpenBao); tears it down
	bootstrap/demo.sh

.PHONY: up
up: build ## bring up the local stack and keep it running (PLATFORM=openbao for OpenBao)
	bootstrap/stack.sh up

.PHONY: down
down: ## tear down the local stack started by `make up`
	bootstrap/stack.sh down

.PHONY: bench
bench: build ## side-by-side benchmark on the local stack; results in .bench/ (outside git)
	$(GO) run ./bench -repo $(CURDIR) -out $(CURDIR)/.bench

.PHONY: release
release: ## cross-compile the plugin for all platforms with SHA256SUMS into dist/
	@rm -rf $(DIST) && mkdir -p $(DIST)
	@for p in $(RELEASE_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; ext=; [[ $$os == windows ]] && ext=.exe; \
	  out=$(DIST)/$(PLUGIN)_$(VERSION)_$${os}_$${arch}$$ext; \
	  echo "building $$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$out ./cmd/$(PLUGIN); \
	done
	cd $(DIST) && sha256sum $(PLUGIN)_* > SHA256SUMS && cat SHA256SUMS

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN) $(DIST)

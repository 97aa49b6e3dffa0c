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
PROVIDER     := terraform-provider-mkvault
# One version source: the tag (git describe), v0.0.0-dev without one.
ifeq ($(origin VERSION),undefined)
VERSION      := $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null || echo v0.0.0-dev)
endif
LDFLAGS      := -s -w -X $(MODULE).Version=$(VERSION)
# The plugin's build, the same for make build, make release and make oci: a
# static binary (no cgo, so it runs on musl-based images too), no local
# paths and no VCS stamp, so the same source and toolchain give the same bytes.
GO_BUILD      = CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags "$(LDFLAGS)"
# The Terraform provider's build, alike; its version has no v.
PROVIDER_BUILD = CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=$(patsubst v%,%,$(VERSION))"
GO           ?= go
BIN          := $(CURDIR)/bin
DIST         ?= $(CURDIR)/dist
FUZZTIME     ?= 30s
# make test runs every fuzz target this long beyond its seed corpus; a
# crash fails it.
FUZZ_SHORT   ?= 10s
E2E_TIMEOUT  ?= 25m
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
# The server the local stack (demo, up, bench) runs on: vault or openbao.
PLATFORM     ?= vault
# The e2e platforms (vault, vault-lts, openbao); empty means vault, plus
# openbao when a bao binary is found. Named platforms are required.
E2E_PLATFORMS ?=

GPG_KEY_ID   ?=
# What the release's provenance names as its source: the commit checked out.
SOURCE_COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)

export VERSION PLATFORM

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: build
build: ## build the plugin and the stand-in server into bin/ (version stamped)
	@mkdir -p $(BIN)
	$(GO_BUILD) -o $(BIN)/$(PLUGIN) ./cmd/$(PLUGIN)
	$(GO) build -trimpath -o $(BIN)/metakraftwerk-devserver ./cmd/metakraftwerk-devserver

.PHONY: provider
provider: ## build the Terraform provider into bin/ (terraform-provider-mkvault; see docs/terraform.md)
	@mkdir -p $(BIN)
	cd $(PROVIDER) && $(PROVIDER_BUILD) -o $(BIN)/$(PROVIDER) .

.PHONY: vault
vault: ## print the vault binary used (builds Vault v1.21.0 into a cache the first time)
	@scripts/vault-bin.sh

# The four modules: the plugin, its release tools, the Terraform provider
# (which stands alone: it can be published from a repository of its own)
# and the provider's acceptance suite, which runs it against this
# repository's engine, stand-in and hostile upstream.
MODULES := . tools $(PROVIDER) $(PROVIDER)/acceptance

.PHONY: modules
modules: ## go mod verify, and go mod tidy changes nothing, in each of the four modules
	@for m in $(MODULES); do \
	  echo "== $$m"; \
	  (cd $$m && $(GO) mod verify && $(GO) mod tidy -diff) || { echo "module $$m: run go mod tidy (or its go.sum does not verify)"; exit 1; }; \
	done

# govulncheck needs Go's vulnerability database; it is never brought in
# through the module proxy.
GOVULNCHECK := golang.org/x/vuln/cmd/govulncheck@v1.9.0
VULN_DB     ?= https://vuln.go.dev

.PHONY: vulncheck
vulncheck: ## govulncheck ./... in each module when the vulnerability database is reachable; says plainly when it is not
	@if ! curl -fsS -m 10 -o /dev/null "$(VULN_DB)/index/db.json.gz" 2>/dev/null; then \
	  echo "vulncheck: SKIPPED: $(VULN_DB) is not reachable from this machine, so no known vulnerability was looked for."; \
	  echo "vulncheck: run make vulncheck where it is reachable before a release (SECURITY.md)."; \
	  exit 0; \
	fi; \
	for m in $(MODULES); do echo "== $$m"; (cd $$m && $(GO) run $(GOVULNCHECK) -db "$(VULN_DB)" ./...) || exit 1; done

.PHONY: unit
unit: modules ## go vet, gofmt check, unit tests with -race (fuzz seeds, release reproducibility), the tools module's tests
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [[ -n $$unformatted ]]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) test -race -count=1 ./...
	cd tools && $(GO) vet ./... && $(GO) test -count=1 ./...
	cd $(PROVIDER) && $(GO) vet ./... && $(GO) test -race -count=1 ./...
	cd $(PROVIDER)/acceptance && $(GO) vet -tags acceptance ./...

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
test: unit lint fuzz-short provider-docs-check provider-mirror-check e2e ## unit, lint, every fuzz target briefly, the provider's registry docs and mirror, end-to-end (what CI runs)

.PHONY: lint
lint: ## golangci-lint (staticcheck, gosec, errcheck, errorlint, bodyclose, noctx, govet, misspell, unparam; .golangci.yml) over the four modules; actionlint, SHA pins and permissions on the GitHub workflows
	@lint=$$(scripts/golangci-lint-bin.sh) && for m in $(MODULES); do \
	  echo "== lint $$m"; (cd $$m && "$$lint" run --config $(CURDIR)/.golangci.yml ./...) || exit 1; \
	done
	@echo "== lint the GitHub workflows"; scripts/lint-workflows.sh

# The provider's registry pages are generated from its schema and examples/
# by tfplugindocs, which asks a terraform binary for the schema.
TFPLUGINDOCS := github.com/hashicorp/terraform-plugin-docs/cmd/tfplugindocs@v0.25.0
PROVIDER_DOCS = tf=$$(scripts/terraform-bin.sh) && cd $(PROVIDER) && PATH="$$(dirname "$$tf"):$$PATH" $(GO) run $(TFPLUGINDOCS)

.PHONY: provider-docs
provider-docs: ## regenerate terraform-provider-mkvault/docs/, the registry's pages, from the schema and examples/
	$(PROVIDER_DOCS) generate --provider-name mkvault --rendered-provider-name "mkvault (MetaKraftwerk secrets engine)"

.PHONY: provider-docs-check
provider-docs-check: provider-docs ## the provider's examples are formatted, its registry docs valid and current (make test)
	tf=$$(scripts/terraform-bin.sh) && "$$tf" fmt -check -recursive -diff $(PROVIDER)/examples
	@out=$$($(PROVIDER_DOCS) validate --provider-name mkvault 2>&1) || { echo "$$out"; exit 1; }; echo "tfplugindocs validate: passed"
	@if [[ -n $$(git status --porcelain -- $(PROVIDER)/docs) ]]; then \
	  git status --short -- $(PROVIDER)/docs; \
	  echo "$(PROVIDER)/docs was not current: make provider-docs regenerated it; commit it"; exit 1; \
	fi

# The provider's own repository, which the Terraform and OpenTofu
# registries read: a mirror of $(PROVIDER)/ (docs/development.md, "Releasing").
MIRROR_DIR ?=

.PHONY: provider-mirror
provider-mirror: ## MIRROR_DIR=… VERSION=vX.Y.Z: write the provider's own repository's tree (its release workflow included) into MIRROR_DIR
	@[[ -n "$(MIRROR_DIR)" ]] || { echo "make provider-mirror needs MIRROR_DIR (a directory outside this repository, e.g. a clone of the mirror)"; exit 1; }
	scripts/provider-mirror.sh "$(MIRROR_DIR)" "$(VERSION)"

.PHONY: provider-mirror-check
provider-mirror-check: ## the mirror's tree, alone in an empty directory: tidy, builds, vets, tests, tfplugindocs validate, its release signed and byte-identical (make test)
	PROVIDER_BUILD='$(PROVIDER_BUILD)' TFPLUGINDOCS='$(TFPLUGINDOCS)' scripts/provider-mirror-check.sh "$(VERSION)"

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	@GO="$(GO)" scripts/fuzz.sh $(FUZZTIME) . ./internal/mkclient

.PHONY: fuzz-short
fuzz-short: ## every fuzz target for FUZZ_SHORT (10s) each, as make test runs them
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZ_SHORT)

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

# Not part of make test: it writes 100,000 roles (about two minutes) and
# measures what they cost; results in .bench/ (outside git).
.PHONY: bench-scale
bench-scale: build ## costs of 10, 10,000 and 100,000 roles on the local stack (docs/performance.md); results in .bench/
	$(GO) run ./bench/scale -repo $(CURDIR) -out $(CURDIR)/.bench $(if $(BEFORE),-before $(BEFORE))

TOOLS       := $(DIST)/.tools
RELEASE_BIN := $(DIST)/.bin

# release-tools builds the packaging tools of the nested tools/ module.
.PHONY: release-tools
release-tools:
	@mkdir -p $(TOOLS)
	cd tools && $(GO) build -o $(TOOLS)/release ./release && \
	  $(GO) build -o $(TOOLS)/cyclonedx-gomod github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod
	$(TOOLS)/release check-version -version $(VERSION)

# release-binaries builds the plugin for each of PLATFORMS into
# RELEASE_BIN, and with PROVIDER_BIN set the Terraform provider into it.
.PHONY: release-binaries
release-binaries:
	@rm -rf $(RELEASE_BIN) $(PROVIDER_BIN)
	@for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; ext=; [[ $$os == windows ]] && ext=.exe; \
	  echo "building $$os/$$arch"; \
	  GOOS=$$os GOARCH=$$arch $(GO_BUILD) -o $(RELEASE_BIN)/$${os}_$${arch}/$(PLUGIN)$$ext ./cmd/$(PLUGIN); \
	  if [[ -n "$(PROVIDER_BIN)" ]]; then \
	    (cd $(PROVIDER) && GOOS=$$os GOARCH=$$arch $(PROVIDER_BUILD) \
	      -o $(PROVIDER_BIN)/$${os}_$${arch}/$(PROVIDER)_v$(patsubst v%,%,$(VERSION))$$ext .) || exit 1; \
	  fi; \
	done

RELEASE_FILES = $(DIST)/$(PLUGIN)_$(patsubst v%,%,$(VERSION))_* $(DIST)/$(PROVIDER)_$(patsubst v%,%,$(VERSION))_*

.PHONY: release
release: ## VERSION=vX.Y.Z: plugin and Terraform provider zips for 6 platforms, OCI image, SLSA provenance, SHA256SUMS (+ .sig and the public key with GPG_KEY_ID), SBOM into dist/
	@rm -rf $(RELEASE_FILES) # this version's files only; other versions in dist/ stay
	$(MAKE) --no-print-directory release-tools
	$(MAKE) --no-print-directory release-binaries PLATFORMS="$(RELEASE_PLATFORMS)" PROVIDER_BIN=$(RELEASE_BIN)/provider
	$(TOOLS)/release package -version $(VERSION) -bin $(RELEASE_BIN) -provider-bin $(RELEASE_BIN)/provider -provider-manifest $(CURDIR)/$(PROVIDER)/terraform-registry-manifest.json -license $(CURDIR)/LICENSE \
	  -out $(DIST) -sbom-tool $(TOOLS)/cyclonedx-gomod -gpg-key "$(GPG_KEY_ID)" \
	  -source-commit "$(SOURCE_COMMIT)" -go-version "$$($(GO) env GOVERSION)" -plugin-build '$(GO_BUILD)' -provider-build '$(PROVIDER_BUILD)'
	@cd $(DIST) && ls -1d $(notdir $(RELEASE_FILES)) $$(ls metakraftwerk-release-key.asc 2>/dev/null) && cat $(PLUGIN)_$(patsubst v%,%,$(VERSION))_SHA256SUMS

.PHONY: oci
oci: ## VERSION=vX.Y.Z: OCI image layout (linux amd64+arm64) for OpenBao's plugin stanza, in dist/
	$(MAKE) --no-print-directory release-tools
	$(MAKE) --no-print-directory release-binaries PLATFORMS="$(filter linux/%,$(RELEASE_PLATFORMS))" PROVIDER_BIN=
	$(TOOLS)/release oci -version $(VERSION) -bin $(RELEASE_BIN) -out $(DIST)/$(PLUGIN)_$(patsubst v%,%,$(VERSION))_oci
	@echo "image layout: $(DIST)/$(PLUGIN)_$(patsubst v%,%,$(VERSION))_oci"

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN) $(DIST)

package main

import (
	"encoding/json"
	"sort"
)

// A release's provenance: an in-toto Statement v1 whose predicate is SLSA
// Provenance v1, in the form supply-chain tooling reads. It says which
// source commit, which Go, which build commands and which builder made
// each artifact. It is built on the maintainer's machine by `make release`
// itself, not by a hosted builder, so it claims SLSA Build L1 and nothing
// more: that the provenance exists and describes the build. It carries no
// time or invocation id, so the same source and toolchain give the same
// bytes.

const (
	statementType  = "https://in-toto.io/Statement/v1"
	provenanceType = "https://slsa.dev/provenance/v1"
	// buildType names what the external parameters mean: this Makefile's
	// release target.
	buildType = "https://github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/blob/main/docs/install.md#provenance"
	// builderID is the builder: the Makefile target run on the releasing
	// maintainer's machine (SLSA Build L1).
	builderID  = "https://github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/blob/main/Makefile#release"
	sourceRepo = "git+https://github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk"
)

// buildInfo is what the release was built from and with.
type buildInfo struct {
	// sourceCommit is the git commit of the source (40 hex digits).
	sourceCommit string
	// goVersion is the toolchain, as `go env GOVERSION` prints it.
	goVersion string
	// pluginBuild and providerBuild are the build commands (flags
	// included) of the plugin and the provider.
	pluginBuild, providerBuild string
	platforms                  []string
}

type statement struct {
	Type          string     `json:"_type"`
	Subject       []subject  `json:"subject"`
	PredicateType string     `json:"predicateType"`
	Predicate     provenance `json:"predicate"`
}

type subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

type provenance struct {
	BuildDefinition buildDefinition `json:"buildDefinition"`
	RunDetails      runDetails      `json:"runDetails"`
}

type buildDefinition struct {
	BuildType            string           `json:"buildType"`
	ExternalParameters   map[string]any   `json:"externalParameters"`
	InternalParameters   map[string]any   `json:"internalParameters"`
	ResolvedDependencies []resolvedSource `json:"resolvedDependencies"`
}

type resolvedSource struct {
	URI    string            `json:"uri"`
	Digest map[string]string `json:"digest"`
}

type runDetails struct {
	Builder struct {
		ID string `json:"id"`
	} `json:"builder"`
}

// makeProvenance is the statement over subjects (file name or image name →
// sha256 hex).
func makeProvenance(version string, info buildInfo, subjects map[string]string) ([]byte, error) {
	st := statement{Type: statementType, PredicateType: provenanceType}
	names := make([]string, 0, len(subjects))
	for n := range subjects {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		st.Subject = append(st.Subject, subject{Name: n, Digest: map[string]string{"sha256": subjects[n]}})
	}
	st.Predicate.BuildDefinition = buildDefinition{
		BuildType: buildType,
		ExternalParameters: map[string]any{
			"target":    "make release",
			"version":   version,
			"platforms": info.platforms,
		},
		InternalParameters: map[string]any{
			"goVersion":     info.goVersion,
			"pluginBuild":   info.pluginBuild,
			"providerBuild": info.providerBuild,
		},
		ResolvedDependencies: []resolvedSource{{URI: sourceRepo + "@" + info.sourceCommit, Digest: map[string]string{"gitCommit": info.sourceCommit}}},
	}
	st.Predicate.RunDetails.Builder.ID = builderID
	out, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

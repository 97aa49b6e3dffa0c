package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// mergeBOMs joins the per-binary SBOMs of one release into one: every
// module of any platform once (bom-refs carry no platform), and each
// module's dependencies the union over platforms. The properties that
// describe one binary (its hashes, GOOS, GOARCH) are dropped; the binaries'
// sha256 are published beside the SBOM.
func mergeBOMs(boms [][]byte) ([]byte, error) {
	var merged map[string]any
	components := map[string]any{}
	deps := map[string]map[string]bool{}
	for i, raw := range boms {
		var bom map[string]any
		if err := json.Unmarshal(raw, &bom); err != nil {
			return nil, fmt.Errorf("SBOM %d: %w", i, err)
		}
		if merged == nil {
			merged = bom
		}
		list, _ := bom["components"].([]any)
		for _, c := range list {
			ref, _ := c.(map[string]any)["bom-ref"].(string)
			if ref == "" {
				return nil, fmt.Errorf("SBOM %d: a component without bom-ref", i)
			}
			components[ref] = c
		}
		dl, _ := bom["dependencies"].([]any)
		for _, d := range dl {
			dm := d.(map[string]any)
			ref, _ := dm["ref"].(string)
			if deps[ref] == nil {
				deps[ref] = map[string]bool{}
			}
			on, _ := dm["dependsOn"].([]any)
			for _, o := range on {
				deps[ref][o.(string)] = true
			}
		}
	}
	if merged == nil {
		return nil, fmt.Errorf("no SBOMs to merge")
	}

	refs := sortedKeys(components)
	list := make([]any, 0, len(refs))
	for _, r := range refs {
		list = append(list, components[r])
	}
	merged["components"] = list
	depList := make([]any, 0, len(deps))
	for _, ref := range sortedKeys(deps) {
		on := sortedKeys(deps[ref])
		entry := map[string]any{"ref": ref}
		if len(on) > 0 {
			entry["dependsOn"] = on
		}
		depList = append(depList, entry)
	}
	merged["dependencies"] = depList

	if md, ok := merged["metadata"].(map[string]any); ok {
		props, _ := md["properties"].([]any)
		kept := []any{}
		for _, p := range props {
			name, _ := p.(map[string]any)["name"].(string)
			if strings.HasPrefix(name, "cdx:gomod:binary:") || name == "cdx:gomod:build:env:GOOS" || name == "cdx:gomod:build:env:GOARCH" {
				continue
			}
			kept = append(kept, p)
		}
		md["properties"] = kept
	}

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(merged); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

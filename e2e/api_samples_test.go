//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// apiSample is one sample request of docs/api.md: its commands, and the
// sample answer the page shows after it in the same section, if any.
type apiSample struct {
	name, answer string
}

// apiSamples lists docs/api.md's marked sample requests in order, and the
// sample payloads (### Sample payload) in order.
func apiSamples(t *testing.T) (samples []apiSample, payloads []string) {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var cur *apiSample
	lang, block, heading := "", "", ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			cur = nil
		case strings.HasPrefix(line, "### "):
			heading = line
		case strings.HasPrefix(line, "<!-- walkthrough: api-"):
			samples = append(samples, apiSample{name: strings.TrimSuffix(strings.TrimPrefix(line, "<!-- walkthrough: "), " -->")})
			cur = &samples[len(samples)-1]
		case lang == "" && strings.HasPrefix(line, "```"):
			lang, block = strings.TrimPrefix(line, "```"), ""
		case lang != "" && line == "```":
			if lang == "json" && heading == "### Sample payload" {
				payloads = append(payloads, block)
				heading = ""
			} else if lang == "json" && cur != nil && cur.answer == "" {
				cur.answer = block
			}
			lang = ""
		case lang != "":
			block += line + "\n"
		}
	}
	return samples, payloads
}

// dataKeys are the keys of an answer's data.
func dataKeys(t *testing.T, what, answer string) map[string]bool {
	t.Helper()
	var v struct {
		Data map[string]any `json:"data"`
	}
	// The page elides with …; those values are strings or whole tails.
	if err := json.Unmarshal([]byte(answer), &v); err != nil {
		t.Fatalf("%s is not JSON: %v\n%s", what, err, answer)
	}
	keys := map[string]bool{}
	for k := range v.Data {
		keys[k] = true
	}
	return keys
}

// TestAPIReferenceSamples runs docs/api.md's sample requests as written,
// against a real server with the engine at the default mount (as the page
// assumes, as Vault's API pages do) and `make up`'s stand-in, in an order
// that gives each the state it needs: configure, read the config, write a
// role (the page's sample payloads, with the stand-in's address and the
// user's password for the page's placeholders), read it, list, read
// creds, rotate, verify, scrape, delete the role, delete the config. Each
// request must succeed (curl --fail-with-body), and each answer the page
// shows names no data key the real one lacks.
func TestAPIReferenceSamples(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	if s.mount() != "metakraftwerk" {
		t.Fatalf("the samples run at the default mount, not %s", s.mount())
	}
	w := newShell(t, s, t.TempDir())
	mk, passwords := docsStandIn(t, s)
	docs := w.blocks("docs/api.md")
	samples, payloads := apiSamples(t)
	if len(samples) != 11 || len(payloads) != 2 {
		t.Fatalf("docs/api.md has %d marked samples and %d payloads, want 11 and 2", len(samples), len(payloads))
	}
	byName := map[string]apiSample{}
	for _, sm := range samples {
		byName[sm.name] = sm
	}

	payload := func(doc string, change func(map[string]any)) {
		var p map[string]any
		if err := json.Unmarshal([]byte(doc), &p); err != nil {
			t.Fatalf("a sample payload is not JSON: %v\n%s", err, doc)
		}
		change(p)
		data, _ := json.Marshal(p)
		if err := os.WriteFile(filepath.Join(w.work, "payload.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// curl as written, but failing on an error status, with its answer.
	failing := sub{"", "curl() { command curl --fail-with-body -sS \"$@\"; }\n"}
	run := func(name string) string {
		t.Helper()
		out := w.run(name, docs[name], failing, w.vaultIsBao())
		if want := byName[name].answer; want != "" {
			// curl's answer is its first line (the verify sample goes on with the CLI).
			first, _, _ := strings.Cut(out, "\n")
			got := dataKeys(t, name+"'s answer", first)
			for k := range dataKeys(t, "docs/api.md's answer to "+name, want) {
				if !got[k] {
					t.Errorf("docs/api.md's answer to %s shows data.%s, which the engine does not answer", name, k)
				}
			}
		}
		return out
	}

	payload(payloads[0], func(p map[string]any) {
		p["base_url"] = mk.URL // the page's is a private CA's; the stand-in speaks HTTP
		delete(p, "ca_cert")
	})
	run("api-write-config")
	if out := run("api-read-config"); !strings.Contains(out, mk.URL) {
		t.Errorf("the config read does not show the base_url written:\n%s", out)
	}
	payload(payloads[1], func(p map[string]any) {
		p["password"] = passwords[p["email"].(string)]
	})
	run("api-write-role")
	run("api-read-role")
	run("api-list-roles")
	run("api-creds")
	if out := run("api-rotate-role"); !strings.Contains(out, `"retired":true`) {
		t.Errorf("the rotate retired no shared token:\n%s", w.mask(out))
	}
	run("api-verify-role")
	if out := run("api-metrics"); !strings.Contains(out, "# TYPE metakraftwerk_creds_issued_total counter") {
		t.Errorf("the scrape does not answer the metrics the page shows:\n%s", out)
	}
	run("api-delete-role")
	run("api-delete-config")
	if out, _, _ := s.CLI("list", "-format=json", "metakraftwerk/roles"); strings.Contains(out, `"ci"`) {
		t.Errorf("the role is left after its delete: %s", out)
	}
}

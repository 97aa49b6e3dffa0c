package metakraftwerk

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestOpenAPIGolden pins the API surface: paths, fields, operations and
// their OpenAPI ids. A change here is a change operators' scripts see; run
// `go test -run TestOpenAPIGolden -update .` and review the diff.
func TestOpenAPIGolden(t *testing.T) {
	env := newTestBackend(t)
	resp, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.HelpOperation, Path: "", Storage: env.storage,
	})
	if err != nil {
		t.Fatal(err)
	}
	doc, ok := resp.Data["openapi"]
	if !ok {
		t.Fatal("no openapi document in root help")
	}
	got, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "openapi.golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Fatalf("OpenAPI document differs from %s; run with -update and review the diff", golden)
	}
	for _, id := range []string{"metakraftwerk-configure", "metakraftwerk-read-configuration", "metakraftwerk-write-role",
		"metakraftwerk-list-roles", "metakraftwerk-generate-credentials", "metakraftwerk-rotate-role"} {
		if !strings.Contains(string(got), `"operationId": "`+id+`"`) {
			t.Errorf("operation id %q missing", id)
		}
	}
}

func TestHelpOnEveryPath(t *testing.T) {
	env := newTestBackend(t)
	for _, p := range env.b.Paths {
		if strings.TrimSpace(p.HelpSynopsis) == "" || strings.TrimSpace(p.HelpDescription) == "" {
			t.Errorf("path %q lacks help", p.Pattern)
		}
	}
	for _, path := range []string{"config", "roles/x", "roles/", "creds/x"} {
		resp, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.HelpOperation, Path: path, Storage: env.storage})
		if err != nil || resp == nil || resp.Data["help"] == "" {
			t.Errorf("help %s: %v %v", path, resp, err)
		}
	}
	// Sensitive fields are marked so that UIs mask them.
	role := env.b.Route("roles/x")
	if role.Fields[fieldPassword].DisplayAttrs == nil || !role.Fields[fieldPassword].DisplayAttrs.Sensitive {
		t.Error("password is not marked sensitive")
	}
	if credsFields[fieldAccessToken].DisplayAttrs == nil || !credsFields[fieldAccessToken].DisplayAttrs.Sensitive {
		t.Error("access_token is not marked sensitive")
	}
}

// Every duration a read returns is whole seconds (an integer), as Vault's
// own engines return them, whatever its name: the one convention.
func TestDurationsReadAsSeconds(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldTTL: "1h", fieldMaxTTL: "2h", fieldReuseMinRemaining: "30m"})
	env.mustWrite("config", map[string]any{fieldExpiryLeeway: "2m", fieldRejectedLoginBackoff: "10m"})
	for path, schema := range map[string]map[string]*framework.FieldSchema{"roles/ci": roleResponseFields, "config": configResponseFields} {
		data := env.mustRead(path).Data
		n := 0
		for name, f := range schema {
			if f.Type != framework.TypeDurationSecond {
				continue
			}
			n++
			if _, ok := data[name].(int64); !ok {
				t.Errorf("%s: %s is %T %v, want whole seconds (int64)", path, name, data[name], data[name])
			}
		}
		if n < 3 {
			t.Errorf("%s: only %d duration fields in the response schema", path, n)
		}
	}
	if got := env.mustRead("config").Data[fieldRejectedLoginBackoff]; got != int64(600) {
		t.Errorf("rejected_login_backoff read back as %v", got)
	}
}

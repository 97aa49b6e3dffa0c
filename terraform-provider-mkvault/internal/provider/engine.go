package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/vault/api"
)

// engine calls the secrets engine's paths through the server's API. Its
// errors are the server's, as they are: the engine's own messages (a
// rejected login's 400, a conflicting write's 409) reach the user
// unchanged.
type engine struct{ vault *api.Client }

// enginePath joins a mount and the engine's path below it.
func enginePath(mount, rest string) string { return strings.Trim(mount, "/") + "/" + rest }

// read returns the data at path, or nil when the server answers 404.
func (e *engine) read(ctx context.Context, p string) (map[string]any, error) {
	s, err := e.vault.Logical().ReadWithContext(ctx, p)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, nil
	}
	return s.Data, nil
}

func (e *engine) write(ctx context.Context, p string, data map[string]any) (*api.Secret, error) {
	return e.vault.Logical().WriteWithContext(ctx, p, data)
}

func (e *engine) delete(ctx context.Context, p string) error {
	_, err := e.vault.Logical().DeleteWithContext(ctx, p)
	return err
}

// engineFrom is the engine a resource was configured with, or an error
// diagnostic when the provider could not be configured.
func engineFrom(data any, diags *diag.Diagnostics) *engine {
	e, ok := data.(*engine)
	if !ok && data != nil {
		diags.AddError("Unexpected provider data", fmt.Sprintf("got %T", data))
	}
	return e
}

// ready reports whether e can be used, adding the error that says why not.
func ready(e *engine, diags *diag.Diagnostics) bool {
	if e == nil {
		diags.AddError("The mkvault provider is not configured", "its address or token is not known yet")
		return false
	}
	return true
}

// The server's JSON numbers arrive as json.Number.

func asString(v any) string {
	s, _ := v.(string)
	return s
}

func asInt64(v any) int64 {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return i
	case float64:
		return int64(n)
	case int64:
		return n
	case int:
		return int64(n)
	}
	return 0
}

func asBool(v any) bool {
	b, _ := v.(bool)
	return b
}

func asStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, item := range list {
		if s, ok := item.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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

// read returns the data at p, or nil when there is none.
func (e *engine) read(ctx context.Context, p string) (map[string]any, error) {
	s, err := e.readSecret(ctx, p)
	if err != nil || s == nil {
		return nil, err
	}
	return s.Data, nil
}

// readSecret reads p. A bare 404 (the engine found nothing) is a nil
// secret; a 404 with the server's own words, such as Vault's "no handler
// for route" when nothing is mounted there, is an error with those words.
// The API client's Read turns both into nil, which would hide why.
func (e *engine) readSecret(ctx context.Context, p string) (*api.Secret, error) {
	resp, err := e.vault.Logical().ReadRawWithContext(ctx, p)
	if resp != nil {
		defer resp.Body.Close()
	}
	var re *api.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusNotFound && !saysSomething(re.Errors) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return api.ParseSecret(resp.Body)
}

func saysSomething(texts []string) bool {
	for _, t := range texts {
		if strings.TrimSpace(t) != "" {
			return true
		}
	}
	return false
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

// exists is the error of a create that finds what it would create made
// already, outside this Terraform state: the provider never takes it over
// unasked. what says what was found; id is its import ID; instead is the
// other way out.
func exists(diags *diag.Diagnostics, typeName, what, id, instead string) {
	diags.AddError("Already exists: import it to manage it", fmt.Sprintf(
		"%s, and this Terraform state did not create it; nothing was written. To manage it with Terraform, import it "+
			"(tofu import with OpenTofu), with NAME this resource's name in the configuration:\n\n"+
			"  terraform import %s.NAME %s\n\n"+
			"or declare an import block with to = %s.NAME and id = %q, then plan and apply again. %s",
		what, typeName, id, typeName, id, instead))
}

// Command noop is the floor of any external secrets plugin, for `make
// bench`: it is served and mounted exactly like the MetaKraftwerk plugin but
// does no work. data answers with plain data; lease answers with a
// non-renewable leased secret shaped like a creds answer (the same fields,
// a token of a JWT's size), so that the difference to a creds read is the
// engine's own work.
package main

import (
	"context"
	"os"
	"strings"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin"
)

const secretType = "noop"

// answer has the fields and sizes of a creds answer.
var answer = map[string]any{
	"access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6ImFjY2VzcyJ9." + strings.Repeat("x", 230) + "." + strings.Repeat("s", 43),
	"token_type":   "Bearer",
	"expires_at":   "2026-11-28T04:00:00Z",
	"user_id":      "11",
	"email":        "team-a-ci@example.com",
	"role":         "bench",
	"token_id":     "6ad4fef6-8659-47ea-b28e-62e3222bf303",
}

func main() {
	meta := &api.PluginAPIClientMeta{}
	if err := meta.FlagSet().Parse(os.Args[1:]); err != nil {
		hclog.Default().Error("noop plugin", "error", err)
		os.Exit(1)
	}
	if err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	}); err != nil {
		hclog.Default().Error("noop plugin", "error", err)
		os.Exit(1)
	}
}

func factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := &framework.Backend{BackendType: logical.TypeLogical}
	read := func(fn framework.OperationFunc) map[logical.Operation]framework.OperationHandler {
		return map[logical.Operation]framework.OperationHandler{logical.ReadOperation: &framework.PathOperation{Callback: fn}}
	}
	b.Paths = []*framework.Path{
		{Pattern: "data", Operations: read(func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
			return &logical.Response{Data: answer}, nil
		})},
		{Pattern: "lease", Operations: read(func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
			resp := b.Secret(secretType).Response(answer, map[string]any{"role": "bench", "token_id": answer["token_id"]})
			resp.Secret.TTL, resp.Secret.MaxTTL, resp.Secret.Renewable = 19*time.Hour, 19*time.Hour, false
			return resp, nil
		})},
	}
	b.Secrets = []*framework.Secret{{
		Type: secretType,
		Revoke: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
			return nil, nil
		},
	}}
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

package metakraftwerk

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestRevokeAlwaysSucceedsWithoutUpstream(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	resp := env.mustRead("creds/ci")
	before := env.mk.Stats()
	_ = env.mk.Close() // MetaKraftwerk gone: revoke must not care.
	revoke, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RevokeOperation, Storage: env.storage, Secret: resp.Secret,
	})
	if err != nil || (revoke != nil && revoke.IsError()) {
		t.Fatalf("revoke: %#v %v", revoke, err)
	}
	if after := env.mk.Stats(); after.LoginRequests != before.LoginRequests || after.APIRequests != before.APIRequests {
		t.Fatal("revoke contacted MetaKraftwerk")
	}
	if !strings.Contains(env.logs.String(), "lease revoked") {
		t.Error("revoke did not log at debug level")
	}
	// Even a lease with no internal data (e.g. written by an older version) revokes.
	if _, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RevokeOperation, Storage: env.storage,
		Secret: &logical.Secret{InternalData: map[string]any{"secret_type": secretAccessTokenType}},
	}); err != nil {
		t.Fatalf("revoke without internal data: %v", err)
	}
}

func TestRenewIsNotSupported(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	resp := env.mustRead("creds/ci")
	_, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RenewOperation, Storage: env.storage, Secret: resp.Secret,
	})
	if err == nil {
		t.Fatal("renew succeeded on a non-renewable token lease")
	}
}

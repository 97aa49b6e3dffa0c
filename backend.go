// Package metakraftwerk is a HashiCorp Vault secrets engine that keeps
// MetaKraftwerk logins under named roles and hands out MetaKraftwerk access
// tokens (JWTs) as leased, non-renewable secrets whose leases end shortly
// before the tokens expire.
package metakraftwerk

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// Version is the plugin version reported to Vault; the Makefile stamps it
// with -ldflags "-X ...metakraftwerk.Version=vX.Y.Z".
var Version = "v0.1.0-dev"

// Factory creates the backend; Vault calls it when the engine is mounted.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend(time.Now)
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

type backend struct {
	*framework.Backend

	// now is the clock used for every lease and cache decision (tests inject one).
	now func() time.Time

	// mu guards the cached client and the configuration it was built from.
	mu        sync.RWMutex
	client    *mkclient.Client
	clientCfg *mkConfig
	// clientGen changes whenever the cached client is dropped, so that a
	// client built from a configuration read before the drop is not cached.
	clientGen uint64

	// cache holds reused tokens and decoded roles (memory only).
	cache *memCache
}

func newBackend(clock func() time.Time) *backend {
	b := &backend{now: clock, cache: newMemCache()}
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configStorageKey, roleStoragePrefix},
		},
		Paths:          framework.PathAppend(pathConfig(b), pathRoles(b), pathCreds(b)),
		Secrets:        []*framework.Secret{secretAccessToken(b)},
		Invalidate:     b.invalidate,
		Clean:          b.clean,
		RunningVersion: Version,
	}
	return b
}

// getClient returns the MetaKraftwerk client for the current configuration,
// building it on first use.
func (b *backend) getClient(ctx context.Context, s logical.Storage) (*mkclient.Client, *mkConfig, error) {
	b.mu.RLock()
	client, cfg, gen := b.client, b.clientCfg, b.clientGen
	b.mu.RUnlock()
	if client != nil {
		return client, cfg, nil
	}

	cfg, err := effectiveConfig(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	client, err = cfg.newClient()
	if err != nil {
		return nil, nil, err
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client != nil {
		client.Close()
		return b.client, b.clientCfg, nil
	}
	if b.clientGen == gen {
		b.client, b.clientCfg = client, cfg
	}
	return client, cfg, nil
}

// resetClient drops the cached client and every cached token; the next
// request rebuilds the client from storage.
func (b *backend) resetClient() {
	b.mu.Lock()
	if b.client != nil {
		b.client.Close()
	}
	b.client, b.clientCfg = nil, nil
	b.clientGen++
	b.mu.Unlock()
	b.cache.reset()
}

// invalidate is called when storage changes underneath this process
// (replication, performance standbys).
func (b *backend) invalidate(_ context.Context, key string) {
	switch {
	case key == configStorageKey:
		b.resetClient()
	case strings.HasPrefix(key, roleStoragePrefix):
		b.cache.evict(strings.TrimPrefix(key, roleStoragePrefix))
	}
}

// clean runs when the engine is unmounted or the plugin reloaded.
func (b *backend) clean(context.Context) {
	b.resetClient()
}

const backendHelp = `
The MetaKraftwerk secrets engine hands out MetaKraftwerk API access tokens.

It keeps MetaKraftwerk logins (email and password) under named roles. Reading
creds/<role> logs in to MetaKraftwerk with that role's login and returns the
JWT access token as a leased, non-renewable secret whose lease ends
expiry_leeway before the token's exp claim.

MetaKraftwerk cannot invalidate a token, so revoking a lease contacts nothing
and always succeeds; the token stays usable until it expires.

Paths: config (connection settings, optional), roles/<name> (logins),
creds/<name> (mint a token).
`

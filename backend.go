// Package metakraftwerk is a HashiCorp Vault secrets engine that keeps
// MetaKraftwerk logins under named roles and hands out MetaKraftwerk access
// tokens (JWTs) as leased, non-renewable secrets whose leases end shortly
// before the tokens expire.
package metakraftwerk

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/helper/salt"
	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/singleflight"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// Version is the plugin version reported to Vault; the Makefile stamps it
// with -ldflags "-X ...metakraftwerk.Version=vX.Y.Z".
var Version = "v0.0.0-dev"

// Factory creates the backend; Vault calls it when the engine is mounted.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend(time.Now)
	conf.System = newReplicationStateCache(conf.System, time.Now)
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

type backend struct {
	*framework.Backend

	// now is the clock of every lease and reuse decision (tests inject one).
	now func() time.Time
	// store is the in-memory state: client, decoded roles, shared tokens.
	store *memStore
	// gate coalesces every login of a role's stored login, and slots
	// bound those in flight at once (gate.go).
	gate  singleflight.Group
	slots loginSlots
	// memoryLocks serialise reading and writing a role's stored rejection
	// memory, and salt is that memory's, read once (loginHMAC).
	memoryLocks []*locksutil.LockEntry
	saltMu      sync.Mutex
	salt        *salt.Salt
	// loginSeq numbers logins in the order they start, so that an outcome
	// answered late never overrides one of a login that started after it.
	loginSeq atomic.Uint64

	// roleLocks serialise the writes of a stored role (and configLock
	// those of the config): each read-modify-write starts from the last
	// acknowledged version, even when a verify login sits in between.
	// Creds reads never take them.
	roleLocks  []*locksutil.LockEntry
	configLock sync.Mutex

	// metrics are served at <mount>/metrics.
	metrics *engineMetrics
}

func newBackend(clock func() time.Time) *backend {
	b := &backend{now: clock, store: newMemStore(), roleLocks: locksutil.CreateLocks(), memoryLocks: locksutil.CreateLocks()}
	b.metrics = newEngineMetrics(b.store)
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configStorageKey, roleStoragePrefix},
			// The rejection memory is the cluster's own (gate.go).
			LocalStorage: []string{loginMemoryPrefix, loginMemorySaltKey},
		},
		Paths:          framework.PathAppend(pathConfig(b), pathRoles(b), pathCreds(b), pathRotateRole(b), pathVerifyRole(b), pathMetrics(b)),
		Secrets:        []*framework.Secret{secretAccessToken(b)},
		Invalidate:     b.invalidate,
		Clean:          func(context.Context) { b.store.reset() },
		RunningVersion: Version,
	}
	return b
}

// client returns the MetaKraftwerk client of the configuration in force,
// building it from storage on first use after a reset.
func (b *backend) client(ctx context.Context, s logical.Storage) (*mkclient.Client, *mkConfig, error) {
	// A configuration write between the read and the put makes the put
	// fail; the next round reads the new configuration.
	for range 3 {
		client, cfg, epoch := b.store.getClient()
		if client != nil {
			return client, cfg, nil
		}
		cfg, err := effectiveConfig(ctx, s)
		if err != nil {
			return nil, nil, err
		}
		b.metrics.setNamed(cfg.MetricsRoles)
		if client, err = cfg.newClient(b.metrics.retries.Inc); err != nil {
			return nil, nil, err
		}
		if b.store.putClient(epoch, client, cfg) {
			return client, cfg, nil
		}
		client.Close()
	}
	return nil, nil, logical.CodedError(http.StatusServiceUnavailable, "the engine's configuration kept changing while this request read it; try again")
}

// lockRole takes the write lock of a role's stored entry; the caller
// defers the returned unlock.
func (b *backend) lockRole(name string) (unlock func()) {
	l := locksutil.LockForKey(b.roleLocks, name)
	l.Lock()
	return l.Unlock
}

// configChanged drops what was computed from the configuration: the
// client and every role's state, and when base_url changed (another
// server, whose verdicts are its own) the login memory too.
func (b *backend) configChanged(baseURLChanged bool) {
	b.store.reset()
	if baseURLChanged {
		b.store.forgetLogins("")
	}
}

// invalidate is called when storage changes underneath this process
// (replication, standbys that serve reads).
func (b *backend) invalidate(_ context.Context, key string) {
	switch {
	case key == configStorageKey:
		// Whether base_url changed is not known here; what a standby
		// remembers of logins is not used anyway (logins are forwarded).
		b.configChanged(true)
	case strings.HasPrefix(key, loginMemoryPrefix):
		// Read again when next needed.
		b.store.forgetLogins(strings.TrimPrefix(key, loginMemoryPrefix))
	case strings.HasPrefix(key, roleStoragePrefix):
		// The login memory is keyed by the login, so it outlives this
		// unless the role is gone.
		b.store.evict(strings.TrimPrefix(key, roleStoragePrefix))
	}
}

const backendHelp = `
The MetaKraftwerk secrets engine hands out MetaKraftwerk API access tokens.

It keeps MetaKraftwerk logins (email and password) under named roles. Reading
creds/<role> logs in to MetaKraftwerk with that role's login and returns the
JWT access token as a leased, non-renewable secret whose lease ends
expiry_leeway before the token's exp claim.

MetaKraftwerk cannot invalidate a token, so revoking a lease contacts nothing
and always succeeds; the token stays usable until it expires.

Paths: config (connection settings, optional), roles/<name> (logins and
their status), creds/<name> (mint a token), rotate-role/<name> (retire a
role's shared token), verify-role/<name> (check a login without minting a
token for anyone), metrics (Prometheus metrics of this mount).
`

// replicationStateTTL is how long the server's answer to ReplicationState
// is reused.
const replicationStateTTL = time.Second

// replicationStateCache is the server's system view with ReplicationState
// reused for replicationStateTTL. The SDK's framework asks for it on every
// request, to refuse operations marked for forwarding on a performance
// standby; for an external plugin each ask is a gRPC round trip back to the
// server, which cost about a fifth of a creds read's CPU in plugin and
// server together. A node's replication state changes when it fails over
// or is promoted, when its mounts are set up again anyway; the TTL bounds
// what a backend that outlived such a change could see.
type replicationStateCache struct {
	logical.SystemView
	now    func() time.Time
	cached atomic.Pointer[replicationStateEntry]
}

type replicationStateEntry struct {
	state consts.ReplicationState
	until time.Time
}

func newReplicationStateCache(sys logical.SystemView, now func() time.Time) *replicationStateCache {
	return &replicationStateCache{SystemView: sys, now: now}
}

func (c *replicationStateCache) ReplicationState() consts.ReplicationState {
	now := c.now()
	if e := c.cached.Load(); e != nil && now.Before(e.until) {
		return e.state
	}
	state := c.SystemView.ReplicationState()
	c.cached.Store(&replicationStateEntry{state: state, until: now.Add(replicationStateTTL)})
	return state
}

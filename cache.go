package metakraftwerk

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/singleflight"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// memCache holds, in the plugin process's memory only, never in storage:
//   - per role with reuse_tokens=true, the most recent token;
//   - decoded roles for the creds path, which would otherwise cost a
//     storage round trip to Vault (a second gRPC call) on every read.
//
// Every eviction bumps a version so that a login or a storage read that was
// already under way when the role or the configuration changed cannot put
// a stale entry back.
type memCache struct {
	mu      sync.Mutex
	entries map[string]*issuedToken
	roles   map[string]*roleEntry
	// versions counts evictions per role; epoch counts full resets.
	versions map[string]uint64
	epoch    uint64
	flights  singleflight.Group
}

func newMemCache() *memCache {
	c := &memCache{}
	c.clear()
	return c
}

func (c *memCache) clear() {
	c.entries = map[string]*issuedToken{}
	c.roles = map[string]*roleEntry{}
	c.versions = map[string]uint64{}
}

// role returns the cached role or, on a miss, the version to store it
// under (formatted only then: a hit is the creds hot path).
// Cached roles are never modified: writes store a new entry and evict.
func (c *memCache) role(name string) (*roleEntry, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.roles[name]; r != nil {
		return r, ""
	}
	return nil, c.versionLocked(name)
}

// storeRoleIf caches role unless name was evicted since version was taken.
func (c *memCache) storeRoleIf(name, version string, role *roleEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.versionLocked(name) == version {
		c.roles[name] = role
	}
}

// usable returns the cached token of role if it has at least minRemaining
// of life left at now.
func (c *memCache) usable(role string, now time.Time, minRemaining time.Duration) *issuedToken {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.entries[role]
	if t == nil || t.ExpiresAt.Sub(now) < minRemaining {
		return nil
	}
	return t
}

// version identifies the cache state of role for a later conditional store;
// it doubles as the role's singleflight key.
func (c *memCache) version(role string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.versionLocked(role)
}

func (c *memCache) versionLocked(role string) string {
	return fmt.Sprintf("%s\x00%d\x00%d", role, c.epoch, c.versions[role])
}

// storeIf caches t for role unless the role was evicted since version was taken.
func (c *memCache) storeIf(role, version string, t *issuedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.versionLocked(role) == version {
		c.entries[role] = t
	}
}

// evict drops role's token and cached definition (role updated or deleted).
func (c *memCache) evict(role string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, role)
	delete(c.roles, role)
	c.versions[role]++
}

// evictToken drops role's token if it is the one with fingerprint (its
// lease was revoked), so that the next reader gets a fresh token.
func (c *memCache) evictToken(role, fingerprint string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.entries[role]; t != nil && t.Fingerprint == fingerprint {
		delete(c.entries, role)
		c.versions[role]++
		return true
	}
	return false
}

// reset drops everything (configuration change, Clean).
func (c *memCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clear()
	c.epoch++
}

// credsRole returns a role for the creds path, from memory when possible.
func (b *backend) credsRole(ctx context.Context, s logical.Storage, name string) (*roleEntry, error) {
	role, version := b.cache.role(name)
	if role != nil {
		return role, nil
	}
	role, err := getRole(ctx, s, name)
	if err != nil || role == nil {
		return role, err
	}
	b.cache.storeRoleIf(name, version, role)
	return role, nil
}

// obtainToken returns a token for the role: with reuse off, a fresh login
// every time; with reuse on, the cached token while it has at least
// reuse_min_remaining left, else one login shared by all concurrent readers.
// reused reports whether the token came from the cache.
func (b *backend) obtainToken(ctx context.Context, client *mkclient.Client, cfg *mkConfig, name string, role *roleEntry) (tok *issuedToken, reused bool, err error) {
	if !role.ReuseTokens {
		tok, err = b.login(ctx, client, role)
		return tok, false, err
	}
	// A token is only worth handing out if its lease can outlast the leeway.
	minRemaining := max(role.ReuseMinRemaining, cfg.ExpiryLeeway+time.Second)
	if t := b.cache.usable(name, b.now(), minRemaining); t != nil {
		return t, true, nil
	}

	version := b.cache.version(name)
	ch := b.cache.flights.DoChan(version, func() (any, error) {
		// Re-check: a flight that finished just before this one started
		// may already have cached a token.
		if t := b.cache.usable(name, b.now(), minRemaining); t != nil {
			return t, nil
		}
		// The login is shared, so it must not die with the first caller's
		// request; it is bounded by the configuration's own budget instead.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.loginBudget())
		defer cancel()
		t, err := b.login(lctx, client, role)
		if err != nil {
			return nil, err
		}
		b.cache.storeIf(name, version, t)
		return t, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, false, res.Err
		}
		return res.Val.(*issuedToken), false, nil
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

package metakraftwerk

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
)

func readToken(t *testing.T, env *testEnv, role string) (string, *logical.Response) {
	t.Helper()
	resp := env.mustRead("creds/" + role)
	return resp.Data[fieldAccessToken].(string), resp
}

func TestReuseOffLogsInEveryRead(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	before := env.mk.Stats().Logins
	a, _ := readToken(t, env, "ci")
	b, _ := readToken(t, env, "ci")
	if a == b || env.mk.Stats().Logins-before != 2 {
		t.Fatalf("reuse off: same token %v, logins %d", a == b, env.mk.Stats().Logins-before)
	}
}

func TestReuseReturnsCurrentTokenWithShorterLeases(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldReuseTokens: true, fieldReuseMinRemaining: "1h"})
	before := env.mk.Stats().Logins
	a, first := readToken(t, env, "ci")
	env.clock.Advance(2 * time.Hour)
	b, second := readToken(t, env, "ci")
	if a != b {
		t.Fatal("reuse on: a second read got a different token")
	}
	if n := env.mk.Stats().Logins - before; n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
	if second.Secret.TTL != first.Secret.TTL-2*time.Hour {
		t.Fatalf("later reader's lease %s, want %s", second.Secret.TTL, first.Secret.TTL-2*time.Hour)
	}
	if second.Data[fieldTokenID] != first.Data[fieldTokenID] || second.Data[fieldExpiresAt] != first.Data[fieldExpiresAt] {
		t.Fatal("reused token reports different id or expiry")
	}

	// With less than reuse_min_remaining left, the next read logs in anew.
	env.clock.Advance(17*time.Hour + time.Second) // 59m59s left
	env.mkClock.Advance(19 * time.Hour)
	c, third := readToken(t, env, "ci")
	if c == a || env.mk.Stats().Logins-before != 2 {
		t.Fatal("a token below reuse_min_remaining was handed out again")
	}
	if third.Secret.TTL <= second.Secret.TTL {
		t.Fatalf("fresh token lease %s not longer than the old %s", third.Secret.TTL, second.Secret.TTL)
	}
}

func TestReuseCoalescesConcurrentLogins(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("shared", map[string]any{fieldReuseTokens: true})
	env.createRole("solo", nil)
	// Slow logins make the readers pile up behind the first one.
	env.mk.SetFaults(devserver.Faults{Latency: devserver.Duration(100 * time.Millisecond)})
	before := env.mk.Stats().LoginsByUser[testEmail]

	const n = 200
	var wg sync.WaitGroup
	tokens := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := env.do(logical.ReadOperation, "creds/shared", nil)
			if err != nil || resp.IsError() {
				t.Errorf("read: %v %v", err, respErr(resp))
				return
			}
			tokens <- resp.Data[fieldAccessToken].(string)
		}()
	}
	wg.Wait()
	close(tokens)
	distinct := map[string]bool{}
	for tok := range tokens {
		distinct[tok] = true
	}
	if got := env.mk.Stats().LoginsByUser[testEmail] - before; got != 1 || len(distinct) != 1 {
		t.Fatalf("%d concurrent reads made %d logins and saw %d tokens; want 1 and 1", n, got, len(distinct))
	}
}

func TestReuseEvictions(t *testing.T) {
	type step func(env *testEnv, resp *logical.Response)
	tests := []struct {
		name  string
		evict step
	}{
		{"role update", func(env *testEnv, _ *logical.Response) {
			env.mustWrite("roles/ci", map[string]any{fieldDescription: "changed"})
		}},
		{"config change", func(env *testEnv, _ *logical.Response) {
			env.mustWrite("config", map[string]any{fieldMaxRetries: 2})
		}},
		{"invalidate role", func(env *testEnv, _ *logical.Response) {
			env.b.invalidate(context.Background(), "roles/ci")
		}},
		{"invalidate config", func(env *testEnv, _ *logical.Response) {
			env.b.invalidate(context.Background(), "config")
		}},
		{"clean", func(env *testEnv, _ *logical.Response) {
			env.b.clean(context.Background())
		}},
		{"revoke of the cached token's lease", func(env *testEnv, resp *logical.Response) {
			if _, err := env.b.HandleRequest(context.Background(), &logical.Request{
				Operation: logical.RevokeOperation, Storage: env.storage, Secret: resp.Secret,
			}); err != nil {
				env.t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestBackend(t)
			env.createRole("ci", map[string]any{fieldReuseTokens: true})
			a, resp := readToken(t, env, "ci")
			if again, _ := readToken(t, env, "ci"); again != a {
				t.Fatal("not reused before eviction")
			}
			tt.evict(env, resp)
			if b, _ := readToken(t, env, "ci"); b == a {
				t.Fatalf("token still reused after %s", tt.name)
			}
		})
	}
	t.Run("role delete", func(t *testing.T) {
		env := newTestBackend(t)
		env.createRole("ci", map[string]any{fieldReuseTokens: true})
		a, _ := readToken(t, env, "ci")
		if _, err := env.do(logical.DeleteOperation, "roles/ci", nil); err != nil {
			t.Fatal(err)
		}
		if resp, _ := env.do(logical.ReadOperation, "creds/ci", nil); resp == nil || !resp.IsError() {
			t.Fatal("creds of a deleted role still served")
		}
		env.createRole("ci", map[string]any{fieldReuseTokens: true})
		if b, _ := readToken(t, env, "ci"); b == a {
			t.Fatal("a deleted role's token was handed out for the new role")
		}
	})
	t.Run("revoke of an older lease keeps the cached token", func(t *testing.T) {
		env := newTestBackend(t)
		env.createRole("ci", map[string]any{fieldReuseTokens: true})
		_, old := readToken(t, env, "ci")
		env.mustWrite("roles/ci", map[string]any{fieldDescription: "new"}) // evicts
		cur, _ := readToken(t, env, "ci")
		if _, err := env.b.HandleRequest(context.Background(), &logical.Request{
			Operation: logical.RevokeOperation, Storage: env.storage, Secret: old.Secret,
		}); err != nil {
			t.Fatal(err)
		}
		if again, _ := readToken(t, env, "ci"); again != cur {
			t.Fatal("revoking an unrelated lease evicted the current token")
		}
	})
}

// A login already under way when the role changes must not put its token
// (minted with the old password) into the cache.
func TestReuseStaleLoginNotCached(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldReuseTokens: true})
	c := env.b.cache
	version := c.version("ci")
	c.evict("ci")
	c.storeIf("ci", version, &issuedToken{AccessToken: "stale", ExpiresAt: env.clock.Now().Add(time.Hour * 10)})
	if c.usable("ci", env.clock.Now(), 0) != nil {
		t.Fatal("a login that started before an eviction was cached")
	}
	version = c.version("ci")
	c.reset()
	c.storeIf("ci", version, &issuedToken{AccessToken: "stale", ExpiresAt: env.clock.Now().Add(time.Hour * 10)})
	if c.usable("ci", env.clock.Now(), 0) != nil {
		t.Fatal("a login that started before a reset was cached")
	}
}

// A failed shared login is not cached and each waiter sees the error.
func TestReuseFailedLoginNotCached(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldReuseTokens: true})
	env.mustWrite("config", map[string]any{fieldMaxRetries: 0})
	env.mk.SetFaults(devserver.Faults{FailNext: 1, FailStatus: 502})
	resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
	if statusOf(resp, err) != 502 {
		t.Fatalf("status %d", statusOf(resp, err))
	}
	env.mustRead("creds/ci")
}

// A waiter whose own request ends stops waiting; the shared login goes on
// and its token serves the next reader.
func TestReuseWaiterCancelled(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldReuseTokens: true})
	env.mk.SetFaults(devserver.Faults{Latency: devserver.Duration(300 * time.Millisecond)})
	before := env.mk.Stats().Logins
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	resp, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "creds/ci", Storage: env.storage})
	env.record(resp, err)
	if statusOf(resp, err) != 502 {
		t.Fatalf("status %d", statusOf(resp, err))
	}
	time.Sleep(400 * time.Millisecond)
	env.mustRead("creds/ci")
	if n := env.mk.Stats().Logins - before; n != 1 {
		t.Fatalf("%d logins; the abandoned shared login should have served the next read", n)
	}
}

// The creds path keeps decoded roles in memory; every change reaches it.
func TestCredsRoleCacheFollowsChanges(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	env.mustRead("creds/ci") // cached now

	// Served from memory: a storage outage does not stop creds.
	env.storage.Underlying().FailGet(true)
	env.mustRead("creds/ci")
	env.storage.Underlying().FailGet(false)

	// A write through the API is seen at once.
	before := env.mk.Stats().LoginsByUser[otherEmail]
	env.mustWrite("roles/ci", map[string]any{fieldEmail: otherEmail, fieldPassword: otherPassword})
	env.mustRead("creds/ci")
	if got := env.mk.Stats().LoginsByUser[otherEmail] - before; got != 2 { // verify + creds
		t.Fatalf("%d logins as the new user, want 2", got)
	}

	// A write that reaches storage underneath (replication, another node)
	// is seen after Vault's Invalidate.
	entry, err := logical.StorageEntryJSON(roleStoragePrefix+"ci", &roleEntry{Email: testEmail, Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.storage.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	env.b.invalidate(context.Background(), roleStoragePrefix+"ci")
	before = env.mk.Stats().LoginsByUser[testEmail]
	env.mustRead("creds/ci")
	if got := env.mk.Stats().LoginsByUser[testEmail] - before; got != 1 {
		t.Fatalf("after Invalidate the old login was used (%d logins as the stored user)", got)
	}

	// A deleted role is gone for creds at once.
	if _, err := env.do(logical.DeleteOperation, "roles/ci", nil); err != nil {
		t.Fatal(err)
	}
	if resp, _ := env.do(logical.ReadOperation, "creds/ci", nil); resp == nil || !resp.IsError() {
		t.Fatal("creds served for a deleted role")
	}
}

// A storage read that started before an eviction must not cache the old role.
func TestRoleCacheStaleReadNotStored(t *testing.T) {
	c := newMemCache()
	_, version := c.role("ci")
	c.evict("ci")
	c.storeRoleIf("ci", version, &roleEntry{Email: "old@example.com"})
	if r, _ := c.role("ci"); r != nil {
		t.Fatal("a role read before an eviction was cached")
	}
}

package metakraftwerk

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// A put under a stamp taken before an eviction or a reset is refused; one
// taken after is applied.
func TestStoreRefusesStalePuts(t *testing.T) {
	s := newMemStore()
	put := func(st stamp) bool {
		return s.update(st, "ci", func(rs *roleState) { rs.role = &roleEntry{Email: "x@example.com"} })
	}
	for _, change := range []struct {
		name string
		do   func()
	}{
		{"evict of the role", func() { s.evict("ci") }},
		{"evict of another role", func() { s.evict("other") }},
		{"reset", s.reset},
	} {
		_, st := s.get("ci")
		change.do()
		if put(st) {
			t.Errorf("a put from before the %s was applied", change.name)
		}
		_, st = s.get("ci")
		if !put(st) {
			t.Errorf("a put from after the %s was refused", change.name)
		}
		s.evict("ci")
	}
	// Once the role has state, other roles' evictions leave it alone.
	_, st := s.get("ci")
	put(st)
	_, st = s.get("ci")
	s.evict("other")
	if !s.update(st, "ci", func(rs *roleState) { rs.lastLogin = time.Unix(1, 0) }) {
		t.Error("evicting another role refused a put to this one")
	}
	if rs, _ := s.get("ci"); rs.role == nil || rs.lastLogin.IsZero() {
		t.Errorf("state %+v", rs)
	}
}

// Evicting or deleting role names that never existed holds nothing.
func TestStoreStaysBounded(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	env.mustRead("creds/ci")
	for i := range 10000 {
		if _, err := env.do(logical.DeleteOperation, fmt.Sprintf("roles/never-%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	env.b.store.mu.Lock()
	n := len(env.b.store.roles)
	env.b.store.mu.Unlock()
	if n != 1 {
		t.Fatalf("the store holds state for %d roles after 10,000 deletes of unknown names; want 1", n)
	}
}

// evict returns what it dropped, so that rotate-role can report it.
func TestStoreEvictReturnsWhatItHeld(t *testing.T) {
	s := newMemStore()
	_, st := s.get("ci")
	tok := &issuedToken{TokenID: "j"}
	s.update(st, "ci", func(rs *roleState) { rs.token = tok })
	if old := s.evict("ci"); old.token != tok {
		t.Fatalf("evict returned %+v", old)
	}
	if old := s.evict("ci"); old.token != nil {
		t.Fatal("a second evict returned a token")
	}
}

// A client built from a configuration read before a reset is not cached.
func TestStoreClientFollowsResets(t *testing.T) {
	env := newTestBackend(t)
	_, _, epoch := env.b.store.getClient()
	env.b.store.reset()
	cfg := defaultConfig()
	client, err := cfg.newClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	if env.b.store.putClient(epoch, client, cfg) {
		t.Fatal("a client from before a reset was cached")
	}
	if c, _, _ := env.b.store.getClient(); c != nil {
		t.Fatal("client cached")
	}
}

package metakraftwerk

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// memStore is what the engine keeps in the plugin process's memory, never
// in Vault's storage: the MetaKraftwerk client of the configuration in
// force, and per role what the creds path has learnt (roleState).
//
// Nothing computed from an old role or configuration may outlive a change
// to it. So every value is put under a stamp that the request computing it
// took when it began, and a put is refused when the role was evicted or the
// configuration reset since. The writer changes storage first and evicts
// (or resets) after, whatever storage answered.
type memStore struct {
	mu sync.Mutex
	// seq counts evictions and resets; marks are values of it.
	seq uint64
	// epoch is seq at the last reset: the generation of the client.
	epoch uint64
	// floor is seq at the last eviction or reset: the mark of every role
	// without state. State exists only while it holds something, so
	// evicting role names that were never used costs nothing.
	floor uint64
	roles map[string]*roleState
	// logins is what each role's login has taught the engine about that
	// login: kept across evictions and resets, since it is about the login
	// (email and password), not about a version of the role. It is
	// forgotten only when the role is deleted, when base_url changes, and
	// by a login that tells otherwise.
	logins map[string]*loginMemory
	// loaded holds the roles whose stored login memory (loadRejection)
	// this process has read.
	loaded map[string]bool

	client    *mkclient.Client
	clientCfg *mkConfig
}

// roleState is what the engine holds for one role.
type roleState struct {
	// since is the mark the state was created under.
	since uint64
	// role is the decoded stored role, so that a creds read needs no
	// storage round trip. Never modified: writes evict.
	role *roleEntry
	// token is the shared token of a role with reuse_tokens.
	token *issuedToken
	// lastLogin is when a login of this role last succeeded, and
	// successSeq the start number (backend.loginSeq) of that login.
	lastLogin  time.Time
	successSeq uint64
	// lastError is the text of the role's last failed login, as its reader
	// got it, lastErrorAt when it failed and errorSeq its start number.
	lastError   string
	lastErrorAt time.Time
	errorSeq    uint64
}

// loginKey identifies a role's login (email and password) without holding
// the password a second time.
type loginKey [sha256.Size]byte

func loginKeyOf(role *roleEntry) loginKey {
	return sha256.Sum256([]byte(role.Email + "\x00" + role.Password))
}

// loginMemory is what the engine remembers of one role's login.
type loginMemory struct {
	key loginKey
	// latest is the start number (backend.loginSeq) of the latest login
	// whose outcome was recorded, successSeq that of the latest success.
	latest, successSeq uint64
	// rejection is a login MetaKraftwerk rejected, remembered for
	// rejected_login_backoff.
	rejection *loginRejection
}

// stamp identifies the state a request began from.
type stamp struct {
	// mark changes when the role is evicted or the configuration reset.
	mark uint64
}

func newMemStore() *memStore {
	return &memStore{roles: map[string]*roleState{}, logins: map[string]*loginMemory{}, loaded: map[string]bool{}}
}

// get returns a copy of what is held for the role, and the stamp under
// which what the request learns from it may be put back.
func (s *memStore) get(name string) (roleState, stamp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rs := s.roles[name]; rs != nil {
		return *rs, stamp{mark: rs.since}
	}
	return roleState{}, stamp{mark: s.floor}
}

// update applies fn to the role's state unless the role was evicted or the
// configuration reset since st was taken; it reports whether it did.
func (s *memStore) update(st stamp, name string, fn func(*roleState)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.roles[name]
	if rs == nil {
		if st.mark != s.floor {
			return false
		}
		rs = &roleState{since: s.floor}
		s.roles[name] = rs
	} else if st.mark != rs.since {
		return false
	}
	fn(rs)
	return true
}

// evict drops everything held for the role (role written, deleted or
// rotated, or changed underneath by replication) and returns what it held.
func (s *memStore) evict(name string) roleState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var old roleState
	if rs := s.roles[name]; rs != nil {
		old = *rs
		delete(s.roles, name)
	}
	s.seq++
	s.floor = s.seq
	return old
}

// rejection returns the role's remembered rejection of login key that is
// still in force at now, or nil.
func (s *memStore) rejection(name string, key loginKey, now time.Time) *loginRejection {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.logins[name]; m != nil && m.key == key && m.rejection != nil && now.Before(m.rejection.until) {
		return m.rejection
	}
	return nil
}

// rejectionIfAbout is what rejection returns, and whether the role's
// memory is about login key at all.
func (s *memStore) rejectionIfAbout(name string, key loginKey, now time.Time) (*loginRejection, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.logins[name]
	if m == nil || m.key != key {
		return nil, m == nil
	}
	if m.rejection != nil && now.Before(m.rejection.until) {
		return m.rejection, true
	}
	return nil, true
}

// recordOutcome records the outcome of the login of key that started as
// seq: a success (rejection nil) or a rejection. Outcomes count in the
// order their logins started, not the order MetaKraftwerk answered them: a
// rejection is not remembered over the success of a login that started
// after it, and a success does not end a rejection of a later login. An
// outcome of another login than the one remembered replaces the memory
// only when it started later. It reports whether the remembered rejection
// changed (set, replaced or ended).
func (s *memStore) recordOutcome(name string, key loginKey, seq uint64, rejection *loginRejection) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.logins[name]
	if m == nil || (m.key != key && seq > m.latest) {
		m = &loginMemory{key: key}
		s.logins[name] = m
	} else if m.key != key {
		return false
	}
	m.latest = max(m.latest, seq)
	switch {
	case rejection == nil:
		m.successSeq = max(m.successSeq, seq)
		if m.rejection != nil && m.rejection.seq < seq {
			m.rejection = nil
			return true
		}
	case seq > m.successSeq:
		m.rejection = rejection
		return true
	}
	return false
}

// isLoaded reports whether the role's stored login memory was read.
func (s *memStore) isLoaded(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loaded[name]
}

// restore puts a rejection read from storage into the memory, unless this
// process has learnt something of the role's login since, and marks the
// role's stored memory read.
func (s *memStore) restore(name string, key loginKey, rejection *loginRejection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loaded[name] = true
	if rejection != nil && s.logins[name] == nil {
		s.logins[name] = &loginMemory{key: key, rejection: rejection}
	}
}

// forgetLogins drops the login memory of one role (deleted), or of every
// role when name is "" (base_url changed: another server's verdicts).
func (s *memStore) forgetLogins(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name == "" {
		s.logins, s.loaded = map[string]*loginMemory{}, map[string]bool{}
		return
	}
	delete(s.logins, name)
	delete(s.loaded, name)
}

// capRejection shortens the role's remembered rejection to backoff after
// it was tried (rejected_login_backoff lowered); 0 forgets it. The
// rejection is replaced, not changed: callers may hold it.
func (s *memStore) capRejection(name string, backoff time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.logins[name]
	if m == nil || m.rejection == nil {
		return
	}
	if backoff == 0 {
		m.rejection = nil
		return
	}
	if until := m.rejection.at.Add(backoff); until.Before(m.rejection.until) {
		r := *m.rejection
		r.until = until
		m.rejection = &r
	}
}

// rememberedRoles names the roles with a login memory in this process.
func (s *memStore) rememberedRoles() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.logins))
	for name := range s.logins {
		names = append(names, name)
	}
	return names
}

// reset drops everything but the login memory (configuration changed,
// engine cleaned up).
func (s *memStore) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		s.client.Close()
	}
	s.client, s.clientCfg = nil, nil
	s.roles = map[string]*roleState{}
	s.seq++
	s.floor, s.epoch = s.seq, s.seq
}

// getClient returns the cached client and its configuration, if any, and
// the epoch under which one may be put.
func (s *memStore) getClient() (*mkclient.Client, *mkConfig, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client, s.clientCfg, s.epoch
}

// putClient caches client unless the configuration was reset since epoch
// was taken or another client is cached already; it reports whether it did.
func (s *memStore) putClient(epoch uint64, client *mkclient.Client, cfg *mkConfig) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch != s.epoch || s.client != nil {
		return false
	}
	s.client, s.clientCfg = client, cfg
	return true
}

// eachSharedToken calls fn with the expiry of every role's shared token,
// holding the store's lock: fn must not call back into the store.
func (s *memStore) eachSharedToken(fn func(role string, exp time.Time)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, rs := range s.roles {
		if rs.token != nil {
			fn(name, rs.token.ExpiresAt)
		}
	}
}

// countStates counts the roles of names by state (metakraftwerk_roles),
// under cfg at now.
func (s *memStore) countStates(names []string, cfg *mkConfig, now time.Time) [numRoleStates]int {
	var counts [numRoleStates]int
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range names {
		counts[s.stateOf(name, cfg, now)]++
	}
	return counts
}

// stateOf is the role's state; the caller holds the lock.
func (s *memStore) stateOf(name string, cfg *mkConfig, now time.Time) int {
	rs := s.roles[name]
	// A rejection of another login than the role's (its password changed
	// since) does not refuse it; without the decoded role it is counted
	// until the next read tells.
	if m := s.logins[name]; m != nil && m.rejection != nil && now.Before(m.rejection.until) &&
		(rs == nil || rs.role == nil || m.key == loginKeyOf(rs.role)) {
		return stateRefused
	}
	switch {
	case rs == nil:
		return stateNeverUsed
	case rs.token != nil && rs.role != nil && !reusable(rs.token, rs.role, cfg, now):
		return stateSharedExpiring
	case rs.token != nil:
		return stateShared
	case rs.errorSeq > rs.successSeq:
		return stateError
	case rs.successSeq > 0:
		return stateOK
	}
	return stateNeverUsed
}

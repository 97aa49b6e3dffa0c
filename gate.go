package metakraftwerk

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/helper/salt"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// The gate: every login the engine makes with a role's stored login (creds
// reads, verify-role, a verifying role write that keeps the login) goes
// through one gate per role and login. The gate
//   - refuses, without a login, while a rejection of that login is
//     remembered (rejected_login_backoff);
//   - lets one login fly at a time, shared by everyone who arrives
//     meanwhile, whichever path they came by, for a role not confirmed
//     within loginConfirmedFor;
//   - lets at most the role's max_concurrent_logins logins of that login
//     fly at once on this node, whoever starts them (the gate's flight, a
//     reader of a confirmed role, a waiter after a flight that succeeded),
//     and checks the memory again when one may start, so that once a
//     login is rejected no waiting reader logs in;
//   - records every outcome: in the login memory (which survives role
//     writes that keep the login, rotate-role and config writes that keep
//     base_url) and in the role's status (last_error, last_login_at).
//
// So a password changed in MetaKraftwerk costs at most
// max_concurrent_logins rejected logins per rejected_login_backoff (the
// logins in flight when it changed), whatever mix of paths and callers
// asks; one when the role was not busy. The memory's until is kept in
// storage too (persistRejection), so that a reload or a new active node
// does not start afresh. Only a
// role write that names email or password (a written login, even one equal
// to the stored), a base_url change (another server) and deleting the role
// start afresh; a config write of rejected_login_backoff shortens what is
// remembered to the new backoff (capRejections); an early retry
// (verify-role with retry_now) is allowed once per remembered rejection.
// A verifying write of a new login does not pass the gate (its login is
// not the role's until stored) but takes one of the role's login slots.
// The bound is per role: roles that share a MetaKraftwerk account add up.

// gateFlight is the outcome of a login shared at the gate.
type gateFlight struct {
	// tok is nil when the flight found a creds reader need not log in
	// (decide) and made no login.
	tok    *issuedToken
	reused bool
	// claimed is set by the first creds reader that takes tok.
	claimed atomic.Bool
}

// gateRequest is one caller at the gate.
type gateRequest struct {
	st      stamp
	name    string
	role    *roleEntry
	client  *mkclient.Client
	cfg     *mkConfig
	storage logical.Storage
	// purpose is the metrics purpose of a login this caller starts.
	purpose string
	// early lets a verify-role with retry_now past a remembered rejection
	// that was not itself an early retry's.
	early bool
}

// passGate returns the flight for req's role and login: one in the air, or
// one it starts. A remembered rejection is the error, without a login.
func (b *backend) passGate(ctx context.Context, req gateRequest) (*gateFlight, error) {
	key := loginKeyOf(req.role)
	// A reader after a base_url or ca_cert change never joins a login sent
	// to the old server, or trusting the old roots; a config write that
	// changes neither joins the flight in the air rather than starting a
	// second login beside it.
	flightKey := req.name + "\x00" + string(key[:]) + "\x00" + serverKey(req.cfg)
	if req.early {
		// Early retries share a flight of their own, which the rejection
		// memory lets through once.
		flightKey += "\x00early"
	}
	start := time.Now()
	ch := b.gate.DoChan(flightKey, func() (any, error) {
		// A flight that ended just before this one began may have settled it.
		now := b.now()
		rejection := b.store.rejection(req.name, key, now)
		if rejection != nil && (!req.early || rejection.early) {
			return nil, rejection
		}
		if req.purpose == purposeCreds {
			state, _ := b.store.get(req.name)
			switch v := decide(state, nil, req.role, req.cfg, now); {
			case v.token != nil:
				return &gateFlight{tok: v.token, reused: true}, nil
			case v.alone:
				return &gateFlight{}, nil
			}
		}
		// Its own budget, so that running out of it is the same 504 as a
		// caller's, whichever of the two ends first; it outlives a caller
		// that gives up, for the others.
		lctx, cancel := upstreamBudget(context.WithoutCancel(ctx), req.cfg)
		defer cancel()
		tok, err := b.attemptLogin(lctx, req, key)
		if err != nil {
			return nil, err
		}
		return &gateFlight{tok: tok}, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*gateFlight), nil
	case <-ctx.Done():
		return nil, waitAborted(ctx, req.name, start)
	}
}

// waitAborted is the error of a reader whose ctx ended while it waited at
// the gate (for the shared login, or for a login to end) since start.
func waitAborted(ctx context.Context, name string, start time.Time) error {
	var timeout *errUpstreamTimeout
	if errors.As(context.Cause(ctx), &timeout) {
		return &roleError{role: name, op: opLogin, err: &errUpstreamTimeout{budget: timeout.budget, shared: true}}
	}
	return &roleError{role: name, op: opLogin, err: &errWaitAborted{after: time.Since(start), err: ctx.Err()}}
}

// serverKey names the server a configuration reaches and the roots it
// trusts.
func serverKey(cfg *mkConfig) string {
	roots := sha256.Sum256([]byte(cfg.CACert))
	return cfg.BaseURL + "\x00" + string(roots[:])
}

// loginSlots bounds the logins of each role's login in flight at once.
type loginSlots struct {
	mu     sync.Mutex
	groups map[string]*slotGroup
}

// slotGroup is the logins of one role's login at one server.
type slotGroup struct {
	inFlight int
	// limit is the max_concurrent_logins of the latest caller: a role
	// write that changes it takes effect at the next login.
	limit int
	// waiters wait in the order they came; a slot is handed over by
	// closing the first one's channel, so that no reader waits while later
	// ones go ahead.
	waiters []chan struct{}
	// users counts holders and waiters; the group is dropped at 0.
	users int
}

// acquire waits until fewer than limit logins of key are in flight and
// every earlier waiter has gone, or ctx ends (its error).
func (s *loginSlots) acquire(ctx context.Context, key string, limit int) (release func(), err error) {
	s.mu.Lock()
	if s.groups == nil {
		s.groups = map[string]*slotGroup{}
	}
	g := s.groups[key]
	if g == nil {
		g = &slotGroup{}
		s.groups[key] = g
	}
	g.users++
	g.limit = limit
	release = sync.OnceFunc(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		g.inFlight--
		s.handOver(g)
		s.leave(key, g)
	})
	if len(g.waiters) == 0 && g.inFlight < limit {
		g.inFlight++
		s.mu.Unlock()
		return release, nil
	}
	turn := make(chan struct{})
	g.waiters = append(g.waiters, turn)
	s.handOver(g)
	s.mu.Unlock()
	select {
	case <-turn:
		return release, nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		select {
		case <-turn:
			// Handed a slot as the wait ended: pass it on.
			g.inFlight--
		default:
			g.waiters = slices.DeleteFunc(g.waiters, func(c chan struct{}) bool { return c == turn })
		}
		s.handOver(g)
		s.leave(key, g)
		return nil, ctx.Err()
	}
}

// handOver gives free slots to the first waiters.
func (s *loginSlots) handOver(g *slotGroup) {
	for len(g.waiters) > 0 && g.inFlight < g.limit {
		g.inFlight++
		close(g.waiters[0])
		g.waiters = g.waiters[1:]
	}
}

// leave drops the group when its last holder or waiter is gone.
func (s *loginSlots) leave(key string, g *slotGroup) {
	if g.users--; g.users == 0 {
		delete(s.groups, key)
	}
}

// attemptLogin logs in once with req's role and records the outcome
// (recordLogin). Only the gate, and a creds reader of a role confirmed
// moments ago (decide), call it.
func (b *backend) attemptLogin(ctx context.Context, req gateRequest, key loginKey) (*issuedToken, error) {
	release, err := b.takeSlot(ctx, req, key)
	if err != nil {
		return nil, err
	}
	defer release()
	// A login rejected while this one waited is everyone's answer.
	if rejection := b.store.rejection(req.name, key, b.now()); rejection != nil && (!req.early || rejection.early) {
		return nil, rejection
	}
	seq := b.loginSeq.Add(1)
	tok, err := b.login(ctx, req.client, req.name, req.role, req.purpose)
	if err != nil {
		err = &roleError{role: req.name, op: opLogin, err: upstreamErr(ctx, err)}
	}
	b.recordLogin(req, key, seq, tok, err)
	return tok, err
}

// takeSlot waits for one of the login slots of req's role and login key at
// req's server (max_concurrent_logins of them), or for ctx to end: then the
// error is the reader's (waitAborted).
func (b *backend) takeSlot(ctx context.Context, req gateRequest, key loginKey) (release func(), err error) {
	start := time.Now()
	release, err = b.slots.acquire(ctx, req.name+"\x00"+string(key[:])+"\x00"+req.cfg.BaseURL, req.role.loginLimit())
	if err == nil && ctx.Err() != nil {
		// A slot and the end of the wait at once: no login it cannot await.
		release()
		err = ctx.Err()
	}
	if err != nil {
		return nil, waitAborted(ctx, req.name, start)
	}
	return release, nil
}

// recordLogin records a login's outcome: in the login memory (a success,
// or a rejection remembered for rejected_login_backoff), and in the role's
// status provided the role and configuration it used are still in force:
// last_login_at or last_error, and for a creds read of a role with
// reuse_tokens the token, if it is worth sharing.
func (b *backend) recordLogin(req gateRequest, key loginKey, seq uint64, tok *issuedToken, err error) {
	now := b.now()
	if err == nil {
		if b.store.recordOutcome(req.name, key, seq, nil) {
			b.persistRejection(req, key)
		}
		b.store.update(req.st, req.name, func(rs *roleState) {
			if seq > rs.successSeq {
				rs.lastLogin, rs.successSeq = now, seq
			}
			if req.purpose == purposeCreds && req.role.ReuseTokens && reusable(tok, req.role, req.cfg, now) {
				rs.token = tok
			}
		})
		return
	}
	var apiErr *mkclient.APIError
	var rerr *roleError
	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized && errors.As(err, &rerr) {
		backoff, unlock := b.lockBackoff(req)
		if backoff > 0 && b.store.recordOutcome(req.name, key, seq, &loginRejection{err: rerr, at: now,
			until: now.Add(backoff), seq: seq, early: req.early}) {
			b.persistRejection(req, key)
		}
		unlock()
	}
	b.store.update(req.st, req.name, func(rs *roleState) {
		rs.lastError, rs.lastErrorAt = err.Error(), now
		rs.errorSeq = max(rs.errorSeq, seq)
	})
}

// lockBackoff holds off config writes until unlock, and returns the
// rejected_login_backoff in force for a rejection of req's login: the
// stored configuration's, so that a config write made while the login
// was in flight holds for it as for what was remembered then
// (capRejections); 0 when base_url changed meanwhile (another server's
// verdict). Only rejections come here, at most max_concurrent_logins per
// role and window.
func (b *backend) lockBackoff(req gateRequest) (time.Duration, func()) {
	b.configLock.Lock()
	backoff := req.cfg.RejectedLoginBackoff
	if req.storage != nil {
		ctx, cancel := context.WithTimeout(context.Background(), persistTimeout)
		defer cancel()
		if cfg, err := effectiveConfig(ctx, req.storage); err == nil {
			backoff = cfg.RejectedLoginBackoff
			if cfg.BaseURL != req.cfg.BaseURL {
				backoff = 0
			}
		}
	}
	return backoff, b.configLock.Unlock
}

// The rejection memory in storage: what a process remembers is lost when
// it ends (plugin reload, restart, a new active node), so the until of a
// remembered rejection is kept in storage as well, per role, with the
// login it is about as an HMAC under a random salt of the mount. Only
// rejections write (at most max_concurrent_logins per
// rejected_login_backoff, and the success that ends one): a read that logs
// in or is refused writes nothing. Both paths are local to the cluster
// (PathsSpecial.LocalStorage): the memory is about the logins this
// cluster's active node makes, and a performance secondary must be able to
// write it.
const (
	loginMemoryPrefix  = "login-memory/"
	loginMemorySaltKey = "login-memory-salt"
)

// storedRejection is a remembered rejection as storage holds it.
type storedRejection struct {
	// Login is loginHMAC of the rejected login: never the password, and
	// no match for another login or another server.
	Login string    `json:"login"`
	At    time.Time `json:"at"`
	Until time.Time `json:"until"`
	Early bool      `json:"early,omitempty"`
	// Name and Message are the rejection's as the engine shows them (a
	// known FeathersJS name and message, the status text, or withheld).
	Name    string `json:"name,omitempty"`
	Message string `json:"message"`
}

// loginHMAC identifies a role's login at a server for storage. Whoever can
// read it can read the role's stored password too; the salt keeps it from
// being looked up in tables made for other mounts.
func (b *backend) loginHMAC(ctx context.Context, s logical.Storage, role *roleEntry, cfg *mkConfig) (string, error) {
	b.saltMu.Lock()
	defer b.saltMu.Unlock()
	if b.salt == nil {
		sl, err := salt.NewSalt(ctx, s, &salt.Config{Location: loginMemorySaltKey, HashFunc: salt.SHA256Hash, HMAC: sha256.New, HMACType: "hmac-sha256"})
		if err != nil {
			return "", fmt.Errorf("reading the salt of the login memory: %w", err)
		}
		b.salt = sl
	}
	return b.salt.GetHMAC(role.Email + "\x00" + role.Password + "\x00" + cfg.BaseURL), nil
}

// loadRejection reads the role's stored rejection once per process (and
// again after storage changed underneath, or the role was deleted), before
// its login memory is first consulted.
func (b *backend) loadRejection(ctx context.Context, s logical.Storage, name string, role *roleEntry, cfg *mkConfig) error {
	if b.store.isLoaded(name) {
		return nil
	}
	defer b.lockMemory(name)()
	if b.store.isLoaded(name) {
		return nil
	}
	entry, err := s.Get(ctx, loginMemoryPrefix+name)
	if err != nil {
		return fmt.Errorf("reading the remembered rejection of role %q: %w", name, err)
	}
	var rejection *loginRejection
	var sr storedRejection
	if entry != nil && entry.DecodeJSON(&sr) == nil && b.now().Before(sr.Until) {
		mac, err := b.loginHMAC(ctx, s, role, cfg)
		if err != nil {
			return err
		}
		if hmac.Equal([]byte(mac), []byte(sr.Login)) {
			rejection = &loginRejection{at: sr.At, until: sr.Until, early: sr.Early,
				err: &roleError{role: name, op: opLogin, err: &mkclient.APIError{Op: opLogin, StatusCode: http.StatusUnauthorized, Name: sr.Name, Message: sr.Message}}}
		}
	}
	b.store.restore(name, loginKeyOf(role), rejection)
	return nil
}

// persistRejection writes what the memory now holds of req's login to
// storage: the rejection in force, or its end. A failure leaves the
// memory in this process as it is, and is logged.
func (b *backend) persistRejection(req gateRequest, key loginKey) {
	if req.storage == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), persistTimeout)
	defer cancel()
	defer b.lockMemory(req.name)()
	r, about := b.store.rejectionIfAbout(req.name, key, b.now())
	if !about {
		// Another login's outcome replaced it; that one writes its own.
		return
	}
	var err error
	if r == nil {
		err = req.storage.Delete(ctx, loginMemoryPrefix+req.name)
	} else {
		var mac string
		if mac, err = b.loginHMAC(ctx, req.storage, req.role, req.cfg); err == nil {
			var apiErr *mkclient.APIError
			errors.As(r.err, &apiErr)
			var entry *logical.StorageEntry
			entry, err = logical.StorageEntryJSON(loginMemoryPrefix+req.name, &storedRejection{
				Login: mac, At: r.at, Until: r.until, Early: r.early, Name: apiErr.Name, Message: apiErr.Message})
			if err == nil {
				err = req.storage.Put(ctx, entry)
			}
		}
	}
	if err != nil {
		b.Logger().Warn("could not store the rejection memory of a role; a reload or a new active node will not know it",
			"role", req.name, "error", err)
	}
}

// persistTimeout bounds a write of the rejection memory, which is made
// after the login whatever became of the request that made it.
const persistTimeout = 10 * time.Second

// forgetStoredRejections deletes the stored memory of one role (deleted,
// or its login written), or of every role when name is "" (base_url
// changed). What fails to delete cannot match: the HMAC names the login
// and the server.
func (b *backend) forgetStoredRejections(ctx context.Context, s logical.Storage, name string) {
	names := []string{name}
	if name == "" {
		var err error
		if names, err = s.List(ctx, loginMemoryPrefix); err != nil {
			b.Logger().Warn("could not list the stored rejection memory", "error", err)
			return
		}
	}
	for _, n := range names {
		unlock := b.lockMemory(n)
		err := s.Delete(ctx, loginMemoryPrefix+n)
		b.store.forgetLogins(n)
		unlock()
		if err != nil {
			b.Logger().Warn("could not delete the stored rejection memory of a role", "role", n, "error", err)
		}
	}
}

// capRejections applies a rejected_login_backoff just written to the
// rejections remembered already, in this process and in storage: each
// ends at the latest backoff after it was tried (so lowering the backoff
// shortens them, raising it does not lengthen them), and 0 forgets them.
func (b *backend) capRejections(ctx context.Context, s logical.Storage, backoff time.Duration) {
	names, err := s.List(ctx, loginMemoryPrefix)
	if err != nil {
		b.Logger().Warn("could not list the stored rejection memory", "error", err)
	}
	names = append(names, b.store.rememberedRoles()...)
	slices.Sort(names)
	now := b.now()
	for _, n := range slices.Compact(names) {
		unlock := b.lockMemory(n)
		b.store.capRejection(n, backoff)
		err := capStoredRejection(ctx, s, n, backoff, now)
		unlock()
		if err != nil {
			b.Logger().Warn("could not shorten the stored rejection memory of a role", "role", n, "error", err)
		}
	}
}

// capStoredRejection is capRejection for the role's stored memory.
func capStoredRejection(ctx context.Context, s logical.Storage, name string, backoff time.Duration, now time.Time) error {
	entry, err := s.Get(ctx, loginMemoryPrefix+name)
	if err != nil || entry == nil {
		return err
	}
	var sr storedRejection
	if err := entry.DecodeJSON(&sr); err != nil {
		return s.Delete(ctx, loginMemoryPrefix+name)
	}
	until := sr.At.Add(backoff)
	switch {
	case backoff == 0 || !now.Before(until):
		return s.Delete(ctx, loginMemoryPrefix+name)
	case until.Before(sr.Until):
		sr.Until = until
		if entry, err = logical.StorageEntryJSON(loginMemoryPrefix+name, &sr); err != nil {
			return err
		}
		return s.Put(ctx, entry)
	}
	return nil
}

// lockMemory serialises reading and writing one role's stored memory.
func (b *backend) lockMemory(name string) (unlock func()) {
	l := locksutil.LockForKey(b.memoryLocks, name)
	l.Lock()
	return l.Unlock
}

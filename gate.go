package metakraftwerk

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// The gate: every login the engine makes with a role's stored login (creds
// reads, verify-role, a verifying role write that keeps the login) goes
// through one gate per role and login. The gate
//   - refuses, without a login, while a rejection of that login is
//     remembered (rejected_login_backoff);
//   - lets one login fly at a time, shared by everyone who arrives
//     meanwhile, whichever path they came by;
//   - records every outcome: in the login memory (which survives role
//     writes that keep the login, rotate-role and config writes that keep
//     base_url) and in the role's status (last_error, last_login_at).
//
// So a password changed in MetaKraftwerk costs one rejected login per
// rejected_login_backoff, whatever mix of paths and callers asks. Only a
// write of the role's email or password (a new login), a base_url change
// (another server) and deleting the role start afresh; an early retry
// (verify-role with retry_now) is allowed once per remembered rejection.

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
	st     stamp
	name   string
	role   *roleEntry
	client *mkclient.Client
	cfg    *mkConfig
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
	// The client stands for the configuration in force: a reader after a
	// base_url change never joins a login sent to the old one.
	client := strconv.FormatUint(uint64(reflect.ValueOf(req.client).Pointer()), 16)
	flightKey := req.name + "\x00" + string(key[:]) + "\x00" + client
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
		var timeout *errUpstreamTimeout
		if errors.As(context.Cause(ctx), &timeout) {
			return nil, &roleError{role: req.name, op: opLogin, err: &errUpstreamTimeout{budget: timeout.budget, shared: true}}
		}
		return nil, &roleError{role: req.name, op: opLogin, err: &errWaitAborted{after: time.Since(start), err: ctx.Err()}}
	}
}

// attemptLogin logs in once with req's role and records the outcome
// (recordLogin). Only the gate, and a creds reader of a role confirmed
// moments ago (decide), call it.
func (b *backend) attemptLogin(ctx context.Context, req gateRequest, key loginKey) (*issuedToken, error) {
	seq := b.loginSeq.Add(1)
	tok, err := b.login(ctx, req.client, req.name, req.role, req.purpose)
	if err != nil {
		err = &roleError{role: req.name, op: opLogin, err: upstreamErr(ctx, err)}
	}
	b.recordLogin(req, key, seq, tok, err)
	return tok, err
}

// recordLogin records a login's outcome: in the login memory (a success,
// or a rejection remembered for rejected_login_backoff), and in the role's
// status provided the role and configuration it used are still in force:
// last_login_at or last_error, and for a creds read of a role with
// reuse_tokens the token, if it is worth sharing.
func (b *backend) recordLogin(req gateRequest, key loginKey, seq uint64, tok *issuedToken, err error) {
	now := b.now()
	if err == nil {
		b.store.recordOutcome(req.name, key, seq, nil)
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
	if req.cfg.RejectedLoginBackoff > 0 && errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized && errors.As(err, &rerr) {
		b.store.recordOutcome(req.name, key, seq, &loginRejection{err: rerr, at: now,
			until: now.Add(req.cfg.RejectedLoginBackoff), seq: seq, early: req.early})
	}
	b.store.update(req.st, req.name, func(rs *roleState) {
		rs.lastError, rs.lastErrorAt = err.Error(), now
		rs.errorSeq = max(rs.errorSeq, seq)
	})
}

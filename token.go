package metakraftwerk

import (
	"context"
	"errors"
	"time"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// documentedTokenLifetime is MetaKraftwerk's documented access-token
// lifetime, assumed when a token carries no exp claim.
const documentedTokenLifetime = 20 * time.Hour

// issuedToken is one successful login: the token and what the engine read
// from it. It is never written to storage.
type issuedToken struct {
	AccessToken string
	UserID      string
	Email       string
	// TokenID is the JWT's jti claim, when present.
	TokenID string
	// ExpiresAt is the exp claim or, without one, the documented lifetime
	// from the login (ExpAssumed); a reused token keeps it.
	ExpiresAt  time.Time
	ExpAssumed bool
	Latency    time.Duration
	Attempts   int
}

// login logs in to MetaKraftwerk with the role's login and counts it in
// the metrics under purpose.
func (b *backend) login(ctx context.Context, client *mkclient.Client, name string, role *roleEntry, purpose string) (*issuedToken, error) {
	start := time.Now()
	res, err := client.Login(ctx, role.Email, role.Password)
	b.metrics.login(name, purpose, time.Since(start), err)
	if err != nil {
		return nil, err
	}
	tok := &issuedToken{
		AccessToken: res.AccessToken,
		UserID:      res.UserID,
		// The login's own email, not the answer's: an upstream text is
		// never handed to readers where a known value will do.
		Email:      role.Email,
		TokenID:    res.Claims.ID,
		ExpiresAt:  res.Claims.ExpiresAt,
		ExpAssumed: !res.Claims.HasExp,
		Latency:    time.Since(start),
		Attempts:   res.Attempts,
	}
	if tok.ExpAssumed {
		tok.ExpiresAt = b.now().Add(documentedTokenLifetime).UTC()
	}
	return tok, nil
}

// upstreamMargin is how long before a request's own deadline, when its
// context has one, the engine stops waiting for MetaKraftwerk (a tenth of
// the time left when that is less), so that it answers with its own 504.
const upstreamMargin = 2 * time.Second

// upstreamBudget bounds the upstream work of one request (logins, project
// pages, retries and the waits between them) by the configuration's
// max_upstream_time, and by the request's own deadline when its context
// carries one. Vault and OpenBao cancel a request at their
// max_request_duration (90s by default) without telling the plugin; an
// upstream wait that outlives that reaches the client as an opaque "rpc
// error: code = Canceled", so max_upstream_time stays below it. When the
// budget runs out, context.Cause of the returned context is an
// *errUpstreamTimeout; upstreamErr turns an error that happened because of
// it into that.
func upstreamBudget(ctx context.Context, cfg *mkConfig) (context.Context, context.CancelFunc) {
	budget := cfg.MaxUpstreamTime
	if deadline, ok := ctx.Deadline(); ok {
		left := time.Until(deadline)
		budget = min(budget, left-min(upstreamMargin, left/10))
	}
	return context.WithTimeoutCause(ctx, budget, &errUpstreamTimeout{budget: max(budget, 0)})
}

// upstreamErr returns the budget's timeout in place of err when the
// budget of uctx ran out (and not the request itself ended), else err.
func upstreamErr(uctx context.Context, err error) error {
	var timeout *errUpstreamTimeout
	if err != nil && errors.As(context.Cause(uctx), &timeout) {
		return timeout
	}
	return err
}

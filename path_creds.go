package metakraftwerk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

const tokenTypeBearer = "Bearer"

// loginConfirmedFor is how long a successful login vouches for the role's
// password. A role without a login that recent has its next login made by
// one reader while concurrent readers wait for the verdict, so that a
// password changed in MetaKraftwerk costs one rejected login, not a burst.
const loginConfirmedFor = 10 * time.Second

// credsFieldOrder and credsFields describe a creds answer once: for the
// path's response schema, the secret's fields and the help text.
var credsFieldOrder = []string{fieldAccessToken, fieldTokenType, fieldExpiresAt, fieldUserID, fieldEmail, fieldRole, fieldTokenID}

var credsFields = map[string]*framework.FieldSchema{
	fieldAccessToken: {Type: framework.TypeString, Required: true, Description: `The MetaKraftwerk JWT; send it as "Authorization: Bearer <access_token>".`,
		DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
	fieldTokenType: {Type: framework.TypeString, Required: true, Description: "Always Bearer."},
	fieldExpiresAt: {Type: framework.TypeString, Required: true, Description: "The token's expiry (JWT exp), RFC 3339 UTC."},
	fieldUserID:    {Type: framework.TypeString, Required: true, Description: "MetaKraftwerk user id of the login."},
	fieldEmail:     {Type: framework.TypeString, Required: true, Description: "Email of the login."},
	fieldRole:      {Type: framework.TypeString, Required: true, Description: "The role the token was minted for."},
	fieldTokenID:   {Type: framework.TypeString, Required: true, Description: "The JWT's jti claim, when present."},
}

func pathCreds(b *backend) []*framework.Path {
	handler := func(verb string) *framework.PathOperation {
		return &framework.PathOperation{
			Callback:     b.pathCredsRead,
			DisplayAttrs: &framework.DisplayAttributes{OperationVerb: verb},
			Responses: map[int][]framework.Response{
				200: {{Description: "OK", Fields: credsFields}},
			},
			// The lease, the shared token and the rejection memory live on
			// the active node; standbys that serve reads (OpenBao since
			// 2.5, Vault Enterprise performance standbys) forward.
			ForwardPerformanceStandby: true,
		}
	}
	return []*framework.Path{{
		Pattern: "creds/" + namePattern,
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "credentials",
		},
		Fields: map[string]*framework.FieldSchema{fieldName: roleNameField},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: handler("generate"),
			// For clients that can only POST.
			logical.UpdateOperation: handler("request"),
		},
		HelpSynopsis:    pathCredsHelpSyn,
		HelpDescription: credsHelpDescription(),
	}}
}

// pathCredsRead mints (or hands out the shared) token of a role: role,
// client, token, lease, response.
func (b *backend) pathCredsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if msg := validateRoleName(name); msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	// What this read learns is kept only if the role and the configuration
	// in force now are still in force when it is put back.
	state, st := b.store.get(name)

	role := state.role
	if role == nil {
		var err error
		if role, err = getRole(ctx, req.Storage, name); err != nil {
			return nil, err
		}
		if role == nil {
			return logical.ErrorResponse(fmt.Sprintf("role %q not found", name)), nil
		}
		b.store.update(st, name, func(rs *roleState) { rs.role = role })
	}

	client, cfg, err := b.client(ctx, req.Storage)
	if err != nil {
		return nil, err
	}

	uctx, cancel := upstreamBudget(ctx, cfg)
	defer cancel()
	tok, reused, err := b.credsToken(uctx, st, state, name, role, client, cfg)
	if err != nil {
		var remembered *loginRejection
		if errors.As(err, &remembered) {
			b.metrics.credsRefused.WithLabelValues(name).Inc()
		}
		return errorResponse(err)
	}

	l, err := computeLease(leaseInput{
		Now:        b.now(),
		ExpiresAt:  tok.ExpiresAt,
		ExpAssumed: tok.ExpAssumed,
		Leeway:     cfg.ExpiryLeeway,
		RoleTTL:    role.TTL,
		RoleMaxTTL: role.MaxTTL,
	})
	if err != nil {
		return errorResponse(&roleError{role: name, op: opLogin, err: err})
	}

	expiresAt := tok.ExpiresAt.UTC().Format(time.RFC3339)
	resp := b.Secret(secretAccessTokenType).Response(map[string]any{
		fieldAccessToken: tok.AccessToken,
		fieldTokenType:   tokenTypeBearer,
		fieldExpiresAt:   expiresAt,
		fieldUserID:      tok.UserID,
		fieldEmail:       tok.Email,
		fieldRole:        name,
		fieldTokenID:     tok.TokenID,
	}, map[string]any{
		fieldRole:      name,
		fieldTokenID:   tok.TokenID,
		fieldExpiresAt: expiresAt,
	})
	resp.Secret.TTL = l.TTL
	resp.Secret.MaxTTL = l.MaxTTL
	resp.Secret.Renewable = false
	for _, w := range l.Warnings {
		resp.AddWarning(w)
	}
	source := sourceLogin
	if reused {
		source = sourceShared
	}
	b.metrics.credsIssued.WithLabelValues(name, source).Inc()
	// A plugin logs at trace level into Vault, which drops what is below
	// its own level only after the line crossed the process boundary; a
	// line per reused hand-out cost about as much as the rest of the read.
	if !reused && b.Logger().IsDebug() {
		b.Logger().Debug("issued access token",
			"role", name, "user_id", tok.UserID, "token_id", tok.TokenID,
			"expires_at", expiresAt, "lease_ttl", l.TTL.String(),
			"upstream_latency", tok.Latency.String(), "attempts", tok.Attempts)
	}
	return resp, nil
}

// credsToken returns the token for one read: what the role's state decides
// (decide), else a login of this reader's own when the role logged in
// recently, else a login shared by the role's concurrent readers.
func (b *backend) credsToken(ctx context.Context, st stamp, state roleState, name string, role *roleEntry, client *mkclient.Client, cfg *mkConfig) (tok *issuedToken, reused bool, err error) {
	v := decide(state, role, cfg, b.now())
	switch {
	case v.err != nil:
		return nil, false, v.err
	case v.token != nil:
		return v.token, true, nil
	case v.alone:
		tok, err = b.attemptLogin(ctx, st, name, role, client, cfg)
		return tok, false, err
	}
	return b.sharedLogin(ctx, st, name, role, client, cfg)
}

// verdict is what a role's state decides before any login.
type verdict struct {
	// token is the shared token to hand out (reuse_tokens).
	token *issuedToken
	// err is a remembered rejection: the same error, without a new attempt.
	err error
	// alone says that the role logged in within loginConfirmedFor, so a
	// reader without reuse_tokens logs in on its own.
	alone bool
}

func decide(state roleState, role *roleEntry, cfg *mkConfig, now time.Time) verdict {
	switch {
	case role.ReuseTokens && reusable(state.token, role, cfg, now):
		return verdict{token: state.token}
	case state.rejection != nil && now.Before(state.rejection.until):
		return verdict{err: state.rejection}
	}
	return verdict{alone: !role.ReuseTokens && now.Sub(state.lastLogin) < loginConfirmedFor}
}

// sharedFlight is the outcome of a login shared by concurrent readers.
type sharedFlight struct {
	// tok is nil when the flight found the role confirmed and made no login.
	tok    *issuedToken
	reused bool
	// claimed is set by the first reader that takes tok.
	claimed atomic.Bool
}

// sharedLogin makes one login for all the role's concurrent readers. With
// reuse_tokens its token is everyone's. Without, it decides for all: a
// rejection is everyone's error, a success goes to one reader and the
// others log in themselves. The login outlives the reader that started it,
// within the configuration's max_upstream_time.
func (b *backend) sharedLogin(ctx context.Context, st stamp, name string, role *roleEntry, client *mkclient.Client, cfg *mkConfig) (*issuedToken, bool, error) {
	start := time.Now()
	key := name + "\x00" + strconv.FormatUint(st.mark, 10)
	ch := b.logins.DoChan(key, func() (any, error) {
		// A flight that ended just before this one began may have settled it.
		state, _ := b.store.get(name)
		switch v := decide(state, role, cfg, b.now()); {
		case v.err != nil:
			return nil, v.err
		case v.token != nil:
			return &sharedFlight{tok: v.token, reused: true}, nil
		case v.alone:
			return &sharedFlight{}, nil
		}
		// Its own budget, so that running out of it is the same 504 as a
		// reader's, whichever of the two ends first.
		lctx, cancel := upstreamBudget(context.WithoutCancel(ctx), cfg)
		defer cancel()
		tok, err := b.attemptLogin(lctx, st, name, role, client, cfg)
		if err != nil {
			return nil, err
		}
		return &sharedFlight{tok: tok}, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, false, res.Err
		}
		// The first reader to take the flight's token counts it as its
		// login; with reuse_tokens the others get it shared.
		f := res.Val.(*sharedFlight)
		if f.tok != nil {
			first := f.claimed.CompareAndSwap(false, true)
			if role.ReuseTokens || first {
				return f.tok, f.reused || !first, nil
			}
		}
		tok, err := b.attemptLogin(ctx, st, name, role, client, cfg)
		return tok, false, err
	case <-ctx.Done():
		var timeout *errUpstreamTimeout
		if errors.As(context.Cause(ctx), &timeout) {
			return nil, false, &roleError{role: name, op: opLogin, err: &errUpstreamTimeout{budget: timeout.budget, shared: true}}
		}
		return nil, false, &roleError{role: name, op: opLogin, err: &errWaitAborted{after: time.Since(start), err: ctx.Err()}}
	}
}

// attemptLogin logs in once for a creds read and records the outcome
// (recordLogin).
func (b *backend) attemptLogin(ctx context.Context, st stamp, name string, role *roleEntry, client *mkclient.Client, cfg *mkConfig) (*issuedToken, error) {
	seq := b.loginSeq.Add(1)
	tok, err := b.login(ctx, client, name, role, purposeCreds)
	if err != nil {
		err = &roleError{role: name, op: opLogin, err: upstreamErr(ctx, err)}
	}
	b.recordLogin(st, name, seq, tok, err, role, cfg, true)
	return tok, err
}

// recordLogin records a login's outcome for the role, provided the role and
// configuration it used are still in force: a success (and, when share is
// set and the role has reuse_tokens, the token, if it is worth sharing), or
// a failure, a rejection among them remembered for rejected_login_backoff.
// Outcomes count in the order their logins started (seq), not the order
// MetaKraftwerk answered them: a rejection is not remembered over the
// success of a login that started after it, and a success does not end a
// rejection of a later login.
func (b *backend) recordLogin(st stamp, name string, seq uint64, tok *issuedToken, err error, role *roleEntry, cfg *mkConfig, share bool) {
	now := b.now()
	if err == nil {
		b.store.update(st, name, func(rs *roleState) {
			if seq > rs.successSeq {
				rs.lastLogin, rs.successSeq = now, seq
			}
			if rs.rejection != nil && rs.rejection.seq < seq {
				rs.rejection = nil
			}
			if share && role.ReuseTokens && reusable(tok, role, cfg, now) {
				rs.token = tok
			}
		})
		return
	}
	var rejection *loginRejection
	var apiErr *mkclient.APIError
	var rerr *roleError
	if cfg.RejectedLoginBackoff > 0 && errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized && errors.As(err, &rerr) {
		rejection = &loginRejection{err: rerr, at: now, until: now.Add(cfg.RejectedLoginBackoff), seq: seq}
	}
	b.store.update(st, name, func(rs *roleState) {
		rs.lastError, rs.lastErrorAt = err.Error(), now
		if rejection != nil && seq > rs.successSeq {
			rs.rejection = rejection
		}
	})
}

// reusable reports whether tok may be handed out (again) under role's
// reuse_min_remaining; a token no lease can be issued for never is.
func reusable(tok *issuedToken, role *roleEntry, cfg *mkConfig, now time.Time) bool {
	return tok != nil && tok.ExpiresAt.Sub(now) >= max(role.ReuseMinRemaining, cfg.ExpiryLeeway+time.Second)
}

// credsHelpDescription lists the answer's fields from credsFields.
func credsHelpDescription() string {
	var fields strings.Builder
	for _, name := range credsFieldOrder {
		fmt.Fprintf(&fields, "  %-13s %s\n", name, credsFields[name].Description)
	}
	return strings.Replace(pathCredsHelpDesc, "@FIELDS@\n", fields.String(), 1)
}

const pathCredsHelpSyn = `Mint a MetaKraftwerk access token for a role.`

const pathCredsHelpDesc = `
Logs in to MetaKraftwerk with the role's login and returns the access token
(a JWT) as a leased, non-renewable secret:

@FIELDS@

The lease ends expiry_leeway before exp, capped by the role's ttl and max_ttl
and by the mount's max lease TTL. A token without exp is assumed to live the
documented 20 hours and the response carries a warning.

With reuse_tokens the role's current token is handed out again while it has
reuse_min_remaining left. A login MetaKraftwerk rejects is remembered for the
configuration's rejected_login_backoff: readers get the same error without a
new attempt until then, or until the role is written or rotated.

Revoking the lease contacts nothing and always succeeds: MetaKraftwerk cannot
invalidate a token, which stays usable until it expires. A reused token stays
shared until rotate-role/<name> retires it.
`

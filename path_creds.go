package metakraftwerk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
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

	if err := b.loadRejection(ctx, req.Storage, name, role, cfg); err != nil {
		return nil, err
	}
	uctx, cancel := upstreamBudget(ctx, cfg)
	defer cancel()
	tok, reused, err := b.credsToken(uctx, gateRequest{st: st, name: name, role: role, client: client, cfg: cfg, storage: req.Storage, purpose: purposeCreds}, state)
	if err != nil {
		var remembered *loginRejection
		if errors.As(err, &remembered) {
			b.metrics.refused(name)
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
	b.metrics.issued(name, source)
	// A plugin logs at trace level into Vault, which drops what is below
	// its own level only after the line crossed the process boundary; a
	// line per reused hand-out cost about as much as the rest of the read.
	if !reused && b.Logger().IsDebug() {
		// Only values the engine owns: the user and token ids are the
		// upstream's text.
		b.Logger().Debug("issued access token",
			"role", name, "expires_at", expiresAt, "lease_ttl", l.TTL.String(),
			"upstream_latency", tok.Latency.String(), "attempts", tok.Attempts)
	}
	return resp, nil
}

// credsToken returns the token for one read: what the role's state decides
// (decide), else a login of this reader's own when the role logged in
// recently, else the gate's login, shared by everyone at the gate.
func (b *backend) credsToken(ctx context.Context, req gateRequest, state roleState) (tok *issuedToken, reused bool, err error) {
	role := req.role
	key := loginKeyOf(role)
	v := decide(state, b.store.rejection(req.name, key, b.now()), role, req.cfg, b.now())
	switch {
	case v.err != nil:
		return nil, false, v.err
	case v.token != nil:
		return v.token, true, nil
	case v.alone:
		tok, err = b.attemptLogin(ctx, req, key)
		return tok, false, err
	}
	f, err := b.passGate(ctx, req)
	if err != nil {
		return nil, false, err
	}
	// Without reuse_tokens the flight's token goes to the first reader
	// that takes it; the others log in themselves, now that it succeeded.
	if f.tok != nil {
		first := f.claimed.CompareAndSwap(false, true)
		if role.ReuseTokens || first {
			return f.tok, f.reused || !first, nil
		}
	}
	tok, err = b.attemptLogin(ctx, req, key)
	return tok, false, err
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

// decide is what the role's state and its remembered rejection (nil when
// there is none in force) decide for a creds read.
func decide(state roleState, rejection *loginRejection, role *roleEntry, cfg *mkConfig, now time.Time) verdict {
	switch {
	case role.ReuseTokens && reusable(state.token, role, cfg, now):
		return verdict{token: state.token}
	case rejection != nil:
		return verdict{err: rejection}
	}
	return verdict{alone: !role.ReuseTokens && now.Sub(state.lastLogin) < loginConfirmedFor}
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

//nolint:gosec // G101: help text, not a credential
const pathCredsHelpSyn = `Mint a MetaKraftwerk access token for a role.`

//nolint:gosec // G101: help text, not a credential
const pathCredsHelpDesc = `
Logs in to MetaKraftwerk with the role's login and returns the access token
(a JWT) as a leased, non-renewable secret:

@FIELDS@

The lease ends expiry_leeway before exp, capped by the role's ttl and max_ttl
and by the mount's max lease TTL. A token without exp is assumed to live the
documented 20 hours and the response carries a warning.

With reuse_tokens the role's current token is handed out again while it has
reuse_min_remaining left. At most the role's max_concurrent_logins logins
are in flight at once; further readers wait their turn. A login MetaKraftwerk
rejects is remembered for the configuration's rejected_login_backoff, also
across a plugin reload: readers get the same error without a new attempt
until then, or until the role's email or password is written.

Revoking the lease contacts nothing and always succeeds: MetaKraftwerk cannot
invalidate a token, which stays usable until it expires. A reused token stays
shared until rotate-role/<name> retires it.
`

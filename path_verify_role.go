package metakraftwerk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

func pathVerifyRole(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern: "verify-role/" + namePattern,
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "verify",
			OperationSuffix: "role",
		},
		Fields: map[string]*framework.FieldSchema{
			fieldName: roleNameField,
			fieldRetryNow: {
				Type: framework.TypeBool,
				Description: "While a rejected login is remembered, log in once anyway, for an account fixed in MetaKraftwerk meanwhile. " +
					"Allowed once per remembered rejection: if that login is rejected too, the next is refused until rejected_login_backoff has passed.",
				Default: false,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback: b.pathVerifyRoleWrite,
				Responses: map[int][]framework.Response{
					200: {{Description: "OK", Fields: verifyRoleResponseFields}},
				},
				// It records verified_at and the role's status, which live
				// on the active node.
				ForwardPerformanceStandby: true,
			},
		},
		HelpSynopsis:    pathVerifyRoleHelpSyn,
		HelpDescription: pathVerifyRoleHelpDesc,
	}}
}

var verifyRoleResponseFields = map[string]*framework.FieldSchema{
	fieldVerified:        {Type: framework.TypeBool, Required: true, Description: "The login succeeded and sees every project the role names."},
	fieldUserID:          {Type: framework.TypeString, Required: true, Description: "MetaKraftwerk user id of the login."},
	fieldMissingProjects: {Type: framework.TypeStringSlice, Required: true, Description: "Projects the role names that the login cannot use, each with the reason."},
	fieldUpstreamLatency: {Type: framework.TypeString, Required: true, Description: "Time MetaKraftwerk took for the login and the project check, as a Go duration."},
	fieldVerifiedAt:      {Type: framework.TypeString, Required: true, Description: "The role's verified_at after this check, RFC 3339 UTC."},
}

// pathVerifyRoleWrite checks the stored role now: a login at the role's
// gate, shared with concurrent creds reads and checks, and the projects
// check. A passing check stores verified_at and nothing else. While a
// rejection of the login is remembered the check answers 429 without
// logging in (retry_now lets one login through): whoever may call this path
// must not be able to lock the account out.
func (b *backend) pathVerifyRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if msg := validateRoleName(name); msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	// The stamp comes first: a write after it evicts, and what this check
	// learns is then not recorded in the role's status.
	_, st := b.store.get(name)
	role, err := getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if role == nil {
		return logical.ErrorResponse(fmt.Sprintf("role %q not found", name)), nil
	}
	client, cfg, err := b.client(ctx, req.Storage)
	if err != nil {
		return nil, err
	}

	if err := b.loadRejection(ctx, req.Storage, name, role, cfg); err != nil {
		return nil, err
	}
	// No lock is held while MetaKraftwerk answers.
	uctx, cancel := upstreamBudget(ctx, cfg)
	defer cancel()
	// retry_now matters only while a rejection is remembered; otherwise
	// the check is an ordinary one, sharing the gate's flight.
	early := d.Get(fieldRetryNow).(bool) && b.store.rejection(name, loginKeyOf(role), b.now()) != nil
	gr := gateRequest{st: st, name: name, role: role, client: client, cfg: cfg, storage: req.Storage, purpose: purposeVerify, early: early}
	v, err := b.verifyRole(uctx, gr, role.Projects)
	var rejection *loginRejection
	switch {
	case errors.As(err, &rejection):
		return tooManyRequests(rejection.refusedVerify(name), rejection.until.Sub(b.now())), nil
	case err != nil:
		return errorResponse(err)
	}

	verified := len(v.missing) == 0
	verifiedAt := role.VerifiedAt
	var warning string
	if verified {
		var stored bool
		if verifiedAt, stored, err = b.storeVerifiedAt(ctx, req.Storage, name, role); err != nil {
			return nil, err
		}
		if !stored {
			warning = "the role's login changed while it was checked, so verified_at was not updated; run verify-role again"
		}
	}
	missing := v.missing
	if missing == nil {
		missing = []string{}
	}
	resp := &logical.Response{Data: map[string]any{
		fieldVerified:        verified,
		fieldUserID:          v.tok.UserID,
		fieldMissingProjects: missing,
		fieldUpstreamLatency: v.latency.Round(time.Microsecond).String(),
		fieldVerifiedAt:      formatTime(verifiedAt),
	}}
	if warning != "" {
		resp.AddWarning(warning)
	}
	return resp, nil
}

// storeVerifiedAt stores verified_at on the role, provided its login is
// still the one that was checked; it returns the role's verified_at after
// this, and whether it stored it.
func (b *backend) storeVerifiedAt(ctx context.Context, s logical.Storage, name string, checked *roleEntry) (time.Time, bool, error) {
	defer b.lockRole(name)()
	current, err := getRole(ctx, s, name)
	if err != nil || current == nil || !sameLogin(current, checked) {
		var at time.Time
		if current != nil {
			at = current.VerifiedAt
		}
		return at, false, err
	}
	current.VerifiedAt = b.now().UTC()
	if err := putRole(ctx, s, name, current); err != nil {
		return time.Time{}, false, err
	}
	return current.VerifiedAt, true, nil
}

// verification is what one check of a role's login found.
type verification struct {
	tok *issuedToken
	// missing lists the role's projects the login cannot use.
	missing []string
	// latency is the upstream time of the login and the projects check.
	latency time.Duration
}

// verifyRole checks req's login at the role's gate and, when projects are
// named, lists which of them the login cannot use. The error is the
// login's (a remembered rejection among them) or the listing's; missing
// projects are not an error here. A flight that logged in for a creds
// read serves too: its token is used for the listing, and the login it
// proved is the same.
func (b *backend) verifyRole(ctx context.Context, req gateRequest, projects []string) (*verification, error) {
	start := time.Now()
	f, err := b.passGate(ctx, req)
	if err != nil {
		return nil, err
	}
	tok := f.tok
	if tok == nil {
		// The flight was a creds read's that found the role confirmed a
		// moment ago, and made no login.
		if tok, err = b.attemptLogin(ctx, req, loginKeyOf(req.role)); err != nil {
			return nil, err
		}
	}
	return b.checkProjects(ctx, req, tok, projects, start)
}

// verifyNewLogin checks a login a role write brings (a new role, or a new
// email or password) before it is stored: a login of its own, counted in
// the metrics but not recorded in the login memory or the role's status,
// which are about the stored login. It holds one of the login slots of
// slotKey (the stored login's, or the new role's) while it logs in.
func (b *backend) verifyNewLogin(ctx context.Context, req gateRequest, slotKey loginKey) (*verification, error) {
	start := time.Now()
	release, err := b.takeSlot(ctx, req, slotKey)
	if err != nil {
		return nil, err
	}
	tok, err := b.login(ctx, req.client, req.name, req.role, req.purpose)
	release()
	if err != nil {
		return nil, &roleError{role: req.name, op: opLogin, err: upstreamErr(ctx, err)}
	}
	return b.checkProjects(ctx, req, tok, req.role.Projects, start)
}

// checkProjects lists which of projects the login of tok cannot use.
func (b *backend) checkProjects(ctx context.Context, req gateRequest, tok *issuedToken, projects []string, start time.Time) (*verification, error) {
	v := &verification{tok: tok}
	if len(projects) > 0 {
		listed, err := req.client.Projects(ctx, v.tok.AccessToken, projects)
		if err != nil {
			return nil, &roleError{role: req.name, op: opProjects, err: upstreamErr(ctx, err)}
		}
		v.missing = missingProjects(projects, listed)
	}
	v.latency = time.Since(start)
	return v, nil
}

// missingProjects lists the wanted names that are absent, deleted or
// disabled in have, each quoted with the reason.
func missingProjects(want []string, have []mkclient.Project) []string {
	usable := func(p mkclient.Project) bool { return !p.Deleted && !p.Disabled }
	byName := make(map[string]mkclient.Project, len(have))
	for _, p := range have {
		if cur, ok := byName[p.Name]; !ok || (usable(p) && !usable(cur)) {
			byName[p.Name] = p
		}
	}
	var missing []string
	for _, name := range want {
		p, ok := byName[name]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("%q (not visible)", name))
		case p.Deleted:
			missing = append(missing, fmt.Sprintf("%q (deleted)", name))
		case p.Disabled:
			missing = append(missing, fmt.Sprintf("%q (disabled)", name))
		}
	}
	return missing
}

// sameLogin reports whether a and b log in the same way and check the same
// projects.
func sameLogin(a, b *roleEntry) bool {
	return a.Email == b.Email && a.Password == b.Password && slices.Equal(a.Projects, b.Projects)
}

const pathVerifyRoleHelpSyn = `Check a role's login now, without minting a token for anyone.`

const pathVerifyRoleHelpDesc = `
Logs in once with the stored role and, when the role names projects, checks
that the login can use each; the token is never handed out by this path.
Answers verified, user_id, missing_projects and upstream_latency. The login
goes through the role's gate: concurrent checks and creds reads of the role
share one login.

A passing check stores verified_at and ends a remembered rejected login; it
changes nothing else. A failing login is an error (400 when MetaKraftwerk
rejected it, 502 when it could not be reached, 504 when it did not answer in
time). A rejected login is remembered for rejected_login_backoff, whichever
path made it: until then verify-role answers 429 with retry_after and sends
no login, so that repeated checks cannot lock the account out. After fixing
the account in MetaKraftwerk, retry_now=true logs in once anyway; if that
login is rejected too, the next waits out rejected_login_backoff. Logins
started here count in the metrics with purpose="verify".
`

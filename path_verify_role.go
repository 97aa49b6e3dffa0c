package metakraftwerk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
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
		Fields: map[string]*framework.FieldSchema{fieldName: roleNameField},
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

// pathVerifyRoleWrite checks the stored role now: one login of its own,
// never handed out, and the projects check; concurrent calls for the role
// share one check. A passing check stores verified_at and nothing else. A
// rejected login is remembered like a creds read's, and while a rejection
// is remembered the check answers 429 without logging in: whoever may call
// this path must not be able to lock the account out.
func (b *backend) pathVerifyRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if msg := validateRoleName(name); msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	// The stamp comes first: a write after it evicts, and what this check
	// learns is then not recorded.
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

	// No lock is held while MetaKraftwerk answers.
	uctx, cancel := upstreamBudget(ctx, cfg)
	defer cancel()
	v, err := b.sharedVerify(uctx, st, name, role, client, cfg)
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
		if verifiedAt, stored, err = b.storeVerifiedAt(ctx, req.Storage, name, v.role); err != nil {
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

// sharedVerify checks role once for all concurrent callers of verify-role
// of the role (under the same stamp) and records the login's outcome. It
// returns the role's remembered rejection instead, without a login, while
// there is one.
func (b *backend) sharedVerify(ctx context.Context, st stamp, name string, role *roleEntry, client *mkclient.Client, cfg *mkConfig) (*verification, error) {
	key := name + "\x00" + strconv.FormatUint(st.mark, 10)
	ch := b.verifications.DoChan(key, func() (any, error) {
		// The check outlives a caller that gives up, within that caller's
		// budget: the others wait for it.
		vctx := context.WithoutCancel(ctx)
		if deadline, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			vctx, cancel = context.WithDeadlineCause(vctx, deadline, &errUpstreamTimeout{budget: time.Until(deadline)})
			defer cancel()
		}
		state, _ := b.store.get(name)
		if r := state.rejection; r != nil && b.now().Before(r.until) {
			return nil, r
		}
		v, err := b.verifyRole(vctx, client, name, role)
		b.recordLogin(st, name, v.seq, v.tok, err, role, cfg, false)
		return v, err
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*verification), nil
	case <-ctx.Done():
		var timeout *errUpstreamTimeout
		if errors.As(context.Cause(ctx), &timeout) {
			return nil, &roleError{role: name, op: opLogin, err: timeout}
		}
		return nil, &roleError{role: name, op: opLogin, err: ctx.Err()}
	}
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
	// role is the role that was checked.
	role *roleEntry
	// seq is the login's start number (backend.loginSeq).
	seq uint64
	tok *issuedToken
	// missing lists the role's projects the login cannot use.
	missing []string
	// latency is the upstream time of the login and the projects check.
	latency time.Duration
}

// verifyRole logs in once with role (counted as purpose verify) and, when
// it names projects, lists which of them the login cannot use. The error
// is the login's or the listing's; missing projects are not an error here.
func (b *backend) verifyRole(ctx context.Context, client *mkclient.Client, name string, role *roleEntry) (*verification, error) {
	start := time.Now()
	v := &verification{role: role, seq: b.loginSeq.Add(1)}
	tok, err := b.login(ctx, client, name, role, purposeVerify)
	if err != nil {
		return v, &roleError{role: name, op: opLogin, err: upstreamErr(ctx, err)}
	}
	v.tok = tok
	if len(role.Projects) > 0 {
		projects, err := client.Projects(ctx, tok.AccessToken, role.Projects)
		if err != nil {
			return v, &roleError{role: name, op: opProjects, err: upstreamErr(ctx, err)}
		}
		v.missing = missingProjects(role.Projects, projects)
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
Logs in once with the stored role (a login of its own, never handed out)
and, when the role names projects, checks that the login can use each.
Answers verified, user_id, missing_projects and upstream_latency. Concurrent
calls for one role share one check.

A passing check stores verified_at and ends a remembered rejected login; it
changes nothing else. A failing login is an error (400 when MetaKraftwerk
rejected it, 502 when it could not be reached, 504 when it did not answer in
time). A rejected login is remembered as a creds read's is: until
rejected_login_backoff has passed, verify-role answers 429 with retry_after
and sends no login, so that repeated checks cannot lock the account out.
After fixing the account in MetaKraftwerk, run rotate-role/<name> first (it
forgets the rejection), then verify-role. Logins made here count in the
metrics with purpose="verify".
`

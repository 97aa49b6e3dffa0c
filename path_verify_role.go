package metakraftwerk

import (
	"context"
	"fmt"
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
// never shared or handed out, and the projects check. A passing check
// stores verified_at and nothing else; a failing one is reported, not
// remembered, since it is the operator asking.
func (b *backend) pathVerifyRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if msg := validateRoleName(name); msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	// Held across the login so that verified_at is put on the login that
	// was checked, not on one written meanwhile.
	defer b.lockRole(name)()
	role, err := getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if role == nil {
		return logical.ErrorResponse(fmt.Sprintf("role %q not found", name)), nil
	}
	client, _, err := b.client(ctx, req.Storage)
	if err != nil {
		return nil, err
	}

	_, st := b.store.get(name)
	v, err := b.verifyRole(ctx, client, name, role)
	b.recordLogin(st, name, v.seq, v.tok, err, role, nil)
	if err != nil {
		return errorResponse(err)
	}

	verified := len(v.missing) == 0
	if verified {
		// Only verified_at changes, so what the engine holds for the role
		// stays valid and is not evicted.
		role.VerifiedAt = b.now().UTC()
		if err := putRole(ctx, req.Storage, name, role); err != nil {
			return nil, err
		}
	}
	missing := v.missing
	if missing == nil {
		missing = []string{}
	}
	return &logical.Response{Data: map[string]any{
		fieldVerified:        verified,
		fieldUserID:          v.tok.UserID,
		fieldMissingProjects: missing,
		fieldUpstreamLatency: v.latency.Round(time.Microsecond).String(),
		fieldVerifiedAt:      formatTime(role.VerifiedAt),
	}}, nil
}

// verification is what one check of a role's login found.
type verification struct {
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
	v := &verification{seq: b.loginSeq.Add(1)}
	tok, err := b.login(ctx, client, name, role, purposeVerify)
	if err != nil {
		return v, &roleError{role: name, op: opLogin, err: err}
	}
	v.tok = tok
	if len(role.Projects) > 0 {
		projects, err := client.Projects(ctx, tok.AccessToken, role.Projects)
		if err != nil {
			return v, &roleError{role: name, op: opProjects, err: err}
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

const pathVerifyRoleHelpSyn = `Check a role's login now, without minting a token for anyone.`

const pathVerifyRoleHelpDesc = `
Logs in once with the stored role (a login of its own, never shared or handed
out) and, when the role names projects, checks that the login can use each.
Answers verified, user_id, missing_projects and upstream_latency.

A passing check stores verified_at and ends a remembered rejected login; it
changes nothing else. A failing login is an error (400 when MetaKraftwerk
rejected it, 502 when it could not be reached) and, unlike a creds read, does
not start the rejected-login memory. Use it after changing a password, the CA
or a proxy. Logins made here count in the metrics with purpose="verify".
`

package metakraftwerk

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathRotateRole(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern: "rotate-role/" + namePattern,
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "rotate",
			OperationSuffix: "role",
		},
		Fields: map[string]*framework.FieldSchema{fieldName: roleNameField},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback: b.pathRotateRoleWrite,
				Responses: map[int][]framework.Response{
					200: {{Description: "OK", Fields: rotateRoleResponseFields}},
				},
				// The shared token lives on the active node.
				ForwardPerformanceStandby: true,
			},
		},
		HelpSynopsis:    pathRotateRoleHelpSyn,
		HelpDescription: pathRotateRoleHelpDesc,
	}}
}

var rotateRoleResponseFields = map[string]*framework.FieldSchema{
	fieldRetired:   {Type: framework.TypeBool, Required: true, Description: "Whether the role had a shared token to retire."},
	fieldTokenID:   {Type: framework.TypeString, Description: "The retired token's jti, when one was retired."},
	fieldExpiresAt: {Type: framework.TypeString, Description: "The retired token's expiry, RFC 3339 UTC, when one was retired."},
}

func (b *backend) pathRotateRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if msg := validateRoleName(name); msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	role, err := getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if role == nil {
		return logical.ErrorResponse(fmt.Sprintf("role %q not found", name)), nil
	}
	old := b.store.evict(name)
	data := map[string]any{fieldRetired: old.token != nil}
	if tok := old.token; tok != nil {
		data[fieldTokenID] = tok.TokenID
		data[fieldExpiresAt] = tok.ExpiresAt.UTC().Format(time.RFC3339)
	}
	b.Logger().Info("role rotated: its shared token is retired", "role", name, "retired", old.token != nil)
	return &logical.Response{Data: data}, nil
}

const pathRotateRoleHelpSyn = `Retire a role's shared token so that the next read logs in afresh; the password is not changed.`

const pathRotateRoleHelpDesc = `
Drops everything the engine holds in memory for the role: its shared token
(reuse_tokens) and a remembered rejected login. The next creds read logs in
to MetaKraftwerk afresh; readers never get the retired token again.

This contacts nothing, so it works while MetaKraftwerk is down. MetaKraftwerk
cannot invalidate a token: the retired token stays usable until it expires.
After a suspected leak, change the user's password in MetaKraftwerk too, then
write it to the role.

Revoking leases does not retire the shared token (a lease ends whenever its
reader's Vault token expires); this path does.
`

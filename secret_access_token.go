package metakraftwerk

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const secretAccessTokenType = "metakraftwerk_access_token" //nolint:gosec // G101: the secret type's name, not a credential

func secretAccessToken(b *backend) *framework.Secret {
	return &framework.Secret{
		Type:   secretAccessTokenType,
		Fields: credsFields,
		// No Renew: the lease is issued non-renewable and Vault refuses renewals.
		Revoke: b.secretAccessTokenRevoke,
	}
}

// secretAccessTokenRevoke ends a lease. MetaKraftwerk has no API to
// invalidate a token, so this contacts nothing and never fails: a lease must
// never get stuck, and disabling the engine must always work.
//
// It leaves a role's shared token (reuse_tokens) alone: Vault revokes a
// lease whenever it ends, including when the Vault token of the reader that
// took it expires, so retiring the shared token here would make every
// short-lived CI job's exit cost the next job a login. rotate-role/<name>
// retires it on purpose.
func (b *backend) secretAccessTokenRevoke(_ context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.Logger().Debug("lease revoked; MetaKraftwerk cannot invalidate the token, it stays valid until it expires",
		"role", req.Secret.InternalData[fieldRole], "expires_at", req.Secret.InternalData[fieldExpiresAt])
	return nil, nil
}

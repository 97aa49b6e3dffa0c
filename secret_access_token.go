package metakraftwerk

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	secretAccessTokenType = "metakraftwerk_access_token"
	// internalFieldFingerprint identifies the token in the lease's internal
	// data (a truncated SHA-256, not the token) for cache eviction on revoke.
	internalFieldFingerprint = "token_fingerprint"
)

func secretAccessToken(b *backend) *framework.Secret {
	return &framework.Secret{
		Type: secretAccessTokenType,
		Fields: map[string]*framework.FieldSchema{
			fieldAccessToken: {Type: framework.TypeString, Description: "MetaKraftwerk access token (JWT)."},
			fieldTokenType:   {Type: framework.TypeString, Description: "Always Bearer."},
			fieldExpiresAt:   {Type: framework.TypeString, Description: "Token expiry, RFC 3339 UTC."},
			fieldUserID:      {Type: framework.TypeString, Description: "MetaKraftwerk user id."},
			fieldEmail:       {Type: framework.TypeString, Description: "Email of the login."},
			fieldRole:        {Type: framework.TypeString, Description: "Role name."},
			fieldTokenID:     {Type: framework.TypeString, Description: "JWT jti, when present."},
		},
		// No Renew: the lease is issued non-renewable and Vault refuses renewals.
		Revoke: b.secretAccessTokenRevoke,
	}
}

// secretAccessTokenRevoke ends a lease. MetaKraftwerk has no API to
// invalidate a token, so this contacts nothing and never fails: a lease must
// never get stuck, and disabling the engine must always work. If the token is
// the role's reused token, it is dropped so that the next reader gets a new one.
func (b *backend) secretAccessTokenRevoke(_ context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	role, _ := req.Secret.InternalData[fieldRole].(string)
	tokenID, _ := req.Secret.InternalData[fieldTokenID].(string)
	fingerprint, _ := req.Secret.InternalData[internalFieldFingerprint].(string)
	evicted := false
	if role != "" && fingerprint != "" {
		evicted = b.cache.evictToken(role, fingerprint)
	}
	b.Logger().Debug("lease revoked; MetaKraftwerk cannot invalidate the token, it stays valid until it expires",
		"role", role, "token_id", tokenID, "expires_at", req.Secret.InternalData[fieldExpiresAt], "evicted_from_reuse_cache", evicted)
	return nil, nil
}

package metakraftwerk

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const tokenTypeBearer = "Bearer"

func pathCreds(b *backend) []*framework.Path {
	handler := func(verb string) *framework.PathOperation {
		return &framework.PathOperation{
			Callback:     b.pathCredsRead,
			DisplayAttrs: &framework.DisplayAttributes{OperationVerb: verb},
			Responses: map[int][]framework.Response{
				200: {{Description: "OK", Fields: credsResponseFields}},
			},
		}
	}
	return []*framework.Path{{
		Pattern: "creds/" + namePattern,
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "credentials",
		},
		Fields: map[string]*framework.FieldSchema{
			fieldName: {
				Type:        framework.TypeString,
				Description: "Name of the role to mint a token for.",
				Required:    true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: handler("generate"),
			// For clients that can only POST.
			logical.UpdateOperation: handler("request"),
		},
		HelpSynopsis:    pathCredsHelpSyn,
		HelpDescription: pathCredsHelpDesc,
	}}
}

var credsResponseFields = map[string]*framework.FieldSchema{
	fieldAccessToken: {Type: framework.TypeString, Required: true, Description: "The MetaKraftwerk JWT; send it as Authorization: Bearer <access_token>.",
		DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
	fieldTokenType: {Type: framework.TypeString, Required: true, Description: "Always Bearer."},
	fieldExpiresAt: {Type: framework.TypeString, Required: true, Description: "The token's expiry (JWT exp), RFC 3339 UTC."},
	fieldUserID:    {Type: framework.TypeString, Required: true, Description: "MetaKraftwerk user id of the login."},
	fieldEmail:     {Type: framework.TypeString, Required: true, Description: "Email of the login."},
	fieldRole:      {Type: framework.TypeString, Required: true, Description: "The role the token was minted for."},
	fieldTokenID:   {Type: framework.TypeString, Required: true, Description: "The JWT's jti claim, when present."},
}

func (b *backend) pathCredsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if msg := validateRoleName(name); msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	role, err := b.credsRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if role == nil {
		return logical.ErrorResponse(fmt.Sprintf("role %q not found", name)), nil
	}
	client, cfg, err := b.getClient(ctx, req.Storage)
	if err != nil {
		return nil, err
	}

	tok, reused, err := b.obtainToken(ctx, client, cfg, name, role)
	if err != nil {
		return upstreamErrorResponse(name, err)
	}
	l, err := computeLease(leaseInput{
		Now:        b.now(),
		ExpiresAt:  tok.ExpiresAt,
		ExpAssumed: !tok.Claims.HasExp,
		Leeway:     cfg.ExpiryLeeway,
		RoleTTL:    role.TTL,
		RoleMaxTTL: role.MaxTTL,
	})
	if err != nil {
		var tooShort *errTokenTooShort
		if errors.As(err, &tooShort) {
			b.cache.evictToken(name, tok.Fingerprint)
		}
		return upstreamErrorResponse(name, err)
	}

	expiresAt := l.ExpiresAt.UTC().Format(time.RFC3339)
	resp := b.Secret(secretAccessTokenType).Response(map[string]any{
		fieldAccessToken: tok.AccessToken,
		fieldTokenType:   tokenTypeBearer,
		fieldExpiresAt:   expiresAt,
		fieldUserID:      tok.UserID,
		fieldEmail:       tok.Email,
		fieldRole:        name,
		fieldTokenID:     tok.Claims.ID,
	}, map[string]any{
		fieldRole:                name,
		fieldTokenID:             tok.Claims.ID,
		fieldExpiresAt:           expiresAt,
		internalFieldFingerprint: tok.Fingerprint,
	})
	resp.Secret.TTL = l.TTL
	resp.Secret.MaxTTL = l.MaxTTL
	resp.Secret.Renewable = false
	for _, w := range l.Warnings {
		resp.AddWarning(w)
	}

	b.Logger().Debug("issued access token",
		"role", name, "user_id", tok.UserID, "token_id", tok.Claims.ID,
		"expires_at", expiresAt, "lease_ttl", l.TTL.String(),
		"reused", reused, "upstream_latency", tok.Latency.String(), "attempts", tok.Attempts)
	return resp, nil
}

const pathCredsHelpSyn = `Mint a MetaKraftwerk access token for a role.`

const pathCredsHelpDesc = `
Logs in to MetaKraftwerk with the role's login and returns the access token
(a JWT) as a leased, non-renewable secret:

  access_token  the JWT; send it as "Authorization: Bearer <access_token>"
  token_type    Bearer
  expires_at    the token's expiry (exp), RFC 3339 UTC
  user_id       MetaKraftwerk user id of the login
  email         email of the login
  role          the role name
  token_id      the JWT's jti, when present

The lease ends expiry_leeway before exp, capped by the role's ttl and max_ttl
and by the mount's max lease TTL. A token without exp is assumed to live the
documented 20 hours and the response carries a warning.

Revoking the lease contacts nothing and always succeeds: MetaKraftwerk cannot
invalidate a token, which stays usable until it expires.
`

package metakraftwerk

import (
	"context"
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
		Email:       res.Email,
		TokenID:     res.Claims.ID,
		ExpiresAt:   res.Claims.ExpiresAt,
		ExpAssumed:  !res.Claims.HasExp,
		Latency:     time.Since(start),
		Attempts:    res.Attempts,
	}
	if tok.ExpAssumed {
		tok.ExpiresAt = b.now().Add(documentedTokenLifetime).UTC()
	}
	if tok.Email == "" {
		tok.Email = role.Email
	}
	return tok, nil
}

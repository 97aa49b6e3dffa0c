package metakraftwerk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// issuedToken is one successful login: the token and what the engine read
// from it. It is never written to storage.
type issuedToken struct {
	AccessToken string
	UserID      string
	Email       string
	Claims      tokenClaims
	// ExpiresAt is exp, or the expiry assumed at login when the token has
	// none; a reused token keeps it.
	ExpiresAt   time.Time
	Fingerprint string
	Latency     time.Duration
	Attempts    int
}

// login logs in with the role's credentials and decodes the token.
func (b *backend) login(ctx context.Context, client *mkclient.Client, role *roleEntry) (*issuedToken, error) {
	start := time.Now()
	res, err := client.Login(ctx, role.Email, role.Password)
	latency := time.Since(start)
	if err != nil {
		return nil, err
	}
	claims, err := parseAccessToken(res.AccessToken)
	if err != nil {
		return nil, err
	}
	tok := &issuedToken{
		AccessToken: res.AccessToken,
		UserID:      res.UserID,
		Email:       res.Email,
		Claims:      claims,
		Fingerprint: tokenFingerprint(res.AccessToken),
		Latency:     latency,
		Attempts:    res.Attempts,
	}
	if tok.UserID == "" {
		tok.UserID = claims.Subject
	}
	if tok.Email == "" {
		tok.Email = role.Email
	}
	tok.ExpiresAt, _ = claims.expiry(b.now())
	return tok, nil
}

// upstreamErrorResponse turns a failure to obtain a token for role into
// Vault's error contract: MetaKraftwerk refusing the login is the
// operator's problem (400); anything else is an upstream failure (502).
// Messages name the role, the upstream status and message, never secrets.
func upstreamErrorResponse(role string, err error) (*logical.Response, error) {
	var apiErr *mkclient.APIError
	var tooShort *errTokenTooShort
	switch {
	case errors.As(err, &apiErr) && apiErr.Rejected():
		switch apiErr.StatusCode {
		case http.StatusUnauthorized:
			return logical.ErrorResponse(fmt.Sprintf("MetaKraftwerk rejected the login for role %q: %s", role, apiErr.Message)), nil
		case http.StatusNotFound:
			return logical.ErrorResponse(fmt.Sprintf("MetaKraftwerk has no login endpoint at the configured %s (HTTP 404 for role %q): %s; check %s",
				fieldBaseURL, role, apiErr.Message, fieldBaseURL)), nil
		}
		return logical.ErrorResponse(fmt.Sprintf("MetaKraftwerk rejected the login for role %q (HTTP %d): %s", role, apiErr.StatusCode, apiErr.Message)), nil
	case errors.As(err, &tooShort):
		return nil, logical.CodedError(http.StatusBadGateway, fmt.Sprintf("role %q: %s", role, tooShort))
	case errors.Is(err, context.Canceled):
		return nil, logical.CodedError(http.StatusBadGateway, fmt.Sprintf("getting a MetaKraftwerk token for role %q was cancelled", role))
	}
	return nil, logical.CodedError(http.StatusBadGateway, fmt.Sprintf("getting a MetaKraftwerk token for role %q failed: %s", role, err))
}

// verifyLogin logs in once with role and, when it names projects, checks
// that the login can see each of them. It returns the response to send
// when verification fails, or (nil, nil) when the role may be stored.
func (b *backend) verifyLogin(ctx context.Context, s logical.Storage, name string, role *roleEntry) (*logical.Response, error) {
	client, _, err := b.getClient(ctx, s)
	if err != nil {
		return nil, err
	}
	tok, err := b.login(ctx, client, role)
	if err != nil {
		resp, err := upstreamErrorResponse(name, err)
		return prefixVerify(resp, err)
	}
	if len(role.Projects) == 0 {
		return nil, nil
	}
	projects, err := client.Projects(ctx, tok.AccessToken)
	if err != nil {
		var apiErr *mkclient.APIError
		if errors.As(err, &apiErr) && apiErr.Rejected() {
			return logical.ErrorResponse(fmt.Sprintf("verify: MetaKraftwerk refused to list the projects of role %q (HTTP %d): %s", name, apiErr.StatusCode, apiErr.Message)), nil
		}
		return nil, logical.CodedError(http.StatusBadGateway, fmt.Sprintf("verify: listing the projects of role %q failed: %s", name, err))
	}
	if missing := missingProjects(role.Projects, projects); len(missing) > 0 {
		return logical.ErrorResponse(fmt.Sprintf("verify: the login of role %q (%s) cannot use MetaKraftwerk project(s) %s; grant access in MetaKraftwerk or fix %s",
			name, role.Email, strings.Join(missing, ", "), fieldProjects)), nil
	}
	return nil, nil
}

func prefixVerify(resp *logical.Response, err error) (*logical.Response, error) {
	if resp != nil && resp.IsError() {
		return logical.ErrorResponse("verify: " + resp.Error().Error()), nil
	}
	var coded logical.HTTPCodedError
	if errors.As(err, &coded) {
		return nil, logical.CodedError(coded.Code(), "verify: "+coded.Error())
	}
	return resp, err
}

// missingProjects lists the wanted names that are absent, deleted or
// disabled in have, each quoted with the reason.
func missingProjects(want []string, have []mkclient.Project) []string {
	var missing []string
	for _, name := range want {
		i := slices.IndexFunc(have, func(p mkclient.Project) bool { return p.Name == name })
		switch {
		case i < 0:
			missing = append(missing, fmt.Sprintf("%q (not visible)", name))
		case have[i].Deleted:
			missing = append(missing, fmt.Sprintf("%q (deleted)", name))
		case have[i].Disabled:
			missing = append(missing, fmt.Sprintf("%q (disabled)", name))
		}
	}
	return missing
}

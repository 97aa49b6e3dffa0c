package metakraftwerk

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// documentedTokenLifetime is MetaKraftwerk's documented access-token
// lifetime, assumed when a token carries no exp claim.
const documentedTokenLifetime = 20 * time.Hour

// maxExp bounds the exp claim so that duration arithmetic cannot overflow.
var maxExp = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// ErrNotAJWT means the login answer's accessToken could not be decoded as a JWT.
var ErrNotAJWT = errors.New("the accessToken in MetaKraftwerk's login answer is not a JWT")

// tokenClaims holds what the engine reads from an access token. The
// signature is not verified: the HS256 key is MetaKraftwerk's own secret.
type tokenClaims struct {
	// ExpiresAt is the exp claim; zero when HasExp is false.
	ExpiresAt time.Time
	HasExp    bool
	// ID is the jti claim, when present.
	ID string
	// Subject is the sub claim (the MetaKraftwerk user id), when present.
	Subject string
}

// expiry is the token's exp or, without one, the documented lifetime from
// issuedAt; assumed reports the latter.
func (c tokenClaims) expiry(issuedAt time.Time) (at time.Time, assumed bool) {
	if c.HasExp {
		return c.ExpiresAt, false
	}
	return issuedAt.Add(documentedTokenLifetime).UTC(), true
}

// parseAccessToken decodes a JWT's claims without verifying its signature.
// Errors never quote the token.
func parseAccessToken(token string) (tokenClaims, error) {
	var out tokenClaims
	claims := jwt.MapClaims{}
	parser := jwt.NewParser(jwt.WithoutClaimsValidation())
	if _, _, err := parser.ParseUnverified(token, claims); err != nil {
		return out, fmt.Errorf("%w (%s)", ErrNotAJWT, describeJWTError(err))
	}
	exp, err := claims.GetExpirationTime()
	if err != nil {
		return out, fmt.Errorf("%w (its exp claim is not a number of seconds)", ErrNotAJWT)
	}
	if exp != nil && (exp.Unix() < 0 || exp.Unix() > maxExp.Unix()) {
		return out, fmt.Errorf("%w (its exp claim is outside the years 1970 to 9999)", ErrNotAJWT)
	}
	if exp != nil {
		out.ExpiresAt = exp.Time.UTC()
		out.HasExp = true
	}
	if jti, ok := claims["jti"].(string); ok {
		out.ID = cleanClaim(jti)
	}
	if sub, err := claims.GetSubject(); err == nil {
		out.Subject = cleanClaim(sub)
	}
	return out, nil
}

// describeJWTError names the kind of decoding failure without any token text.
func describeJWTError(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed: expected three base64url segments with JSON header and claims"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unsupported header"
	default:
		return "cannot be decoded"
	}
}

// cleanClaim bounds a claim that is logged or returned, and drops anything
// that is not printable.
func cleanClaim(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// tokenFingerprint identifies a token (for cache eviction on revoke) without
// storing it: the first 16 bytes of its SHA-256, hex-encoded.
func tokenFingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:16])
}

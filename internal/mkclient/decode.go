package mkclient

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// maxMessageLen bounds, in runes, an upstream string quoted in an error.
	maxMessageLen = 200
	// maxClaimLen bounds, in runes, a token claim that is logged or returned.
	maxClaimLen = 128
)

// maxExp bounds the exp claim so that duration arithmetic cannot overflow.
var maxExp = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// ErrNotAJWT means the login answer's accessToken could not be decoded as a JWT.
var ErrNotAJWT = errors.New("the accessToken in MetaKraftwerk's login answer is not a JWT")

// clean removes control characters and bounds the length (on a rune
// boundary, marking the cut with "…") so that an outside string can be
// quoted in an error or a log line.
func clean(s string, maxRunes int) string {
	s = strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, s))
	if r := []rune(s); len(r) > maxRunes {
		s = string(r[:maxRunes]) + "…"
	}
	return s
}

const (
	// redacted replaces a secret that an upstream answer echoes.
	redacted = "[redacted]"
	// withheld replaces an upstream text that a secret cannot be cut out of.
	withheld = "(the message was withheld: it echoed the request's credentials)"
)

// quote is clean for upstream text that may echo what the request carried
// (a gateway that quotes the request body): secret is cut out, as sent and
// as JSON spells it, before the text is bounded, so no prefix of it remains.
func quote(s, secret string, maxRunes int) string {
	s = clean(s, math.MaxInt)
	if secret == "" {
		return clean(s, maxRunes)
	}
	forms := []string{secret, clean(secret, math.MaxInt)}
	for _, escapeHTML := range []bool{true, false} {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(escapeHTML)
		_ = enc.Encode(secret)
		q := bytes.TrimSpace(buf.Bytes())
		forms = append(forms, string(q[1:len(q)-1]))
	}
	for _, f := range forms {
		if f != "" {
			s = strings.ReplaceAll(s, f, redacted)
		}
	}
	for _, f := range forms {
		if f != "" && strings.Contains(s, f) { // the secret overlaps the marker
			return withheld
		}
	}
	return clean(s, maxRunes)
}

// decodeErrorMessage extracts the Feathers error message from an error body,
// leniently: any JSON object with a string "message" is used; anything else
// falls back to the HTTP status text. secret is cut out of it (quote).
func decodeErrorMessage(body []byte, status int, secret string) string {
	var fe struct {
		Message any `json:"message"`
	}
	if json.Unmarshal(bytes.TrimSpace(body), &fe) == nil {
		if s, ok := fe.Message.(string); ok {
			if m := quote(s, secret, maxMessageLen); m != "" {
				return m
			}
		}
	}
	if text := http.StatusText(status); text != "" {
		return text
	}
	return "HTTP " + strconv.Itoa(status)
}

// decodeLoginResponse reads the top-level accessToken, its claims and the
// user from a login answer. Unknown fields are ignored. Errors never contain
// the body or the token.
func decodeLoginResponse(body []byte) (*LoginResult, error) {
	var lr struct {
		AccessToken any `json:"accessToken"`
		User        *struct {
			ID    json.RawMessage `json:"id"`
			Email any             `json:"email"`
		} `json:"user"`
	}
	if err := json.Unmarshal(body, &lr); err != nil {
		return nil, fmt.Errorf("%w: the login answer is not a JSON object", ErrMalformedResponse)
	}
	tok, _ := lr.AccessToken.(string)
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return nil, fmt.Errorf("%w: the login answer has no accessToken", ErrMalformedResponse)
	}
	claims, err := parseClaims(tok)
	if err != nil {
		return nil, err
	}
	res := &LoginResult{AccessToken: tok, Claims: claims}
	if lr.User != nil {
		res.UserID = rawScalar(lr.User.ID)
		if e, ok := lr.User.Email.(string); ok {
			res.Email = clean(e, maxMessageLen)
		}
	}
	if res.UserID == "" {
		res.UserID = claims.Subject
	}
	return res, nil
}

// parseClaims decodes a JWT's claims without verifying its signature.
func parseClaims(token string) (Claims, error) {
	var out Claims
	claims := jwt.MapClaims{}
	parser := jwt.NewParser(jwt.WithoutClaimsValidation())
	if _, _, err := parser.ParseUnverified(token, claims); err != nil {
		return out, fmt.Errorf("%w (%s)", ErrNotAJWT, describeJWTError(err))
	}
	exp, err := claims.GetExpirationTime()
	if err != nil {
		return out, fmt.Errorf("%w (its exp claim is not a number of seconds)", ErrNotAJWT)
	}
	if exp != nil {
		if exp.Unix() < 0 || exp.Unix() > maxExp.Unix() {
			return out, fmt.Errorf("%w (its exp claim is outside the years 1970 to 9999)", ErrNotAJWT)
		}
		out.ExpiresAt = exp.Time.UTC()
		out.HasExp = true
	}
	if jti, ok := claims["jti"].(string); ok {
		out.ID = clean(jti, maxClaimLen)
	}
	if sub, err := claims.GetSubject(); err == nil {
		out.Subject = clean(sub, maxClaimLen)
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

// rawScalar renders a JSON number or string as text; anything else is "".
func rawScalar(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return clean(s, maxClaimLen)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// projectPage is one answer of the project list. Feathers answers either
// with a plain array (pagination off) or with a page object; paged is set
// for the latter.
type projectPage struct {
	projects []Project
	// entries counts the page's entries, named or not (the next $skip).
	entries     int
	paged       bool
	total, skip int
}

// decodeProjects reads one project list answer. Entries without a name
// are skipped.
func decodeProjects(body []byte) (projectPage, error) {
	type entry struct {
		ID       json.RawMessage `json:"id"`
		Name     any             `json:"name"`
		Deleted  any             `json:"deleted"`
		Disabled any             `json:"disabled"`
	}
	var page projectPage
	var raw []entry
	if err := json.Unmarshal(body, &raw); err != nil {
		var paged struct {
			Total *int            `json:"total"`
			Skip  int             `json:"skip"`
			Data  json.RawMessage `json:"data"`
		}
		if json.Unmarshal(body, &paged) != nil || len(paged.Data) == 0 || json.Unmarshal(paged.Data, &raw) != nil {
			return page, fmt.Errorf("%w: the project list is neither a JSON array nor a page of one", ErrMalformedResponse)
		}
		// A page without a total cannot be followed; it is all there is.
		if paged.Total != nil {
			page.paged, page.total, page.skip = true, *paged.Total, paged.Skip
		}
	}
	page.entries = len(raw)
	page.projects = make([]Project, 0, len(raw))
	for _, p := range raw {
		name, _ := p.Name.(string)
		if name == "" {
			continue
		}
		del, _ := p.Deleted.(bool)
		dis, _ := p.Disabled.(bool)
		page.projects = append(page.projects, Project{ID: rawScalar(p.ID), Name: name, Deleted: del, Disabled: dis})
	}
	return page, nil
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110 §10.2.3). A date in the past means "now". Invalid values report
// ok=false so that the caller falls back to its own backoff.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return 0, false
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// ParseCAPool parses a PEM bundle that must contain at least one certificate
// and nothing but certificates: no other block types, no trailing garbage.
func ParseCAPool(pemText string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	rest := bytes.TrimSpace([]byte(pemText))
	for len(rest) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("contains data that is not PEM")
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("contains a %q block; only CERTIFICATE blocks are allowed", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d cannot be parsed: %v", n+1, err)
		}
		pool.AddCert(c)
		n++
		rest = bytes.TrimSpace(rest)
	}
	if n == 0 {
		return nil, errors.New("contains no PEM certificate")
	}
	return pool, nil
}

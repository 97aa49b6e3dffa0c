package mkclient

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// maxMessageLen bounds an upstream message quoted in an error.
const maxMessageLen = 200

// DecodeErrorBody extracts the Feathers error name and message from an error
// body, leniently: any JSON object with a string "message" is used; anything
// else falls back to the HTTP status text. The message is cleaned of control
// characters and shortened so that it is safe to quote.
func DecodeErrorBody(body []byte, status int) (name, message string) {
	var fe struct {
		Name    any `json:"name"`
		Message any `json:"message"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(body), &fe); err == nil {
		if s, ok := fe.Name.(string); ok {
			name = clean(s)
		}
		if s, ok := fe.Message.(string); ok {
			message = clean(s)
		}
	}
	if message == "" {
		message = http.StatusText(status)
		if message == "" {
			message = "HTTP " + strconv.Itoa(status)
		}
	}
	return name, message
}

// clean removes control characters and bounds the length (on a rune
// boundary) so that an upstream string can be quoted in an error.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > maxMessageLen {
		s = string(r[:maxMessageLen]) + "…"
	}
	return s
}

// DecodeLoginResponse reads the top-level accessToken and the user from a
// login answer. Unknown fields are ignored. The error never contains the body.
func DecodeLoginResponse(body []byte) (*LoginResult, error) {
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
	res := &LoginResult{AccessToken: tok}
	if lr.User != nil {
		res.UserID = rawScalar(lr.User.ID)
		if e, ok := lr.User.Email.(string); ok {
			res.Email = clean(e)
		}
	}
	return res, nil
}

// rawScalar renders a JSON number or string as text; anything else is "".
func rawScalar(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return clean(s)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// DecodeProjects reads the project array. Entries without a name are skipped.
func DecodeProjects(body []byte) ([]Project, error) {
	var raw []struct {
		ID       json.RawMessage `json:"id"`
		Name     any             `json:"name"`
		Deleted  any             `json:"deleted"`
		Disabled any             `json:"disabled"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		// Some deployments may wrap lists as {"data":[...]} (Feathers pagination).
		var paged struct {
			Data json.RawMessage `json:"data"`
		}
		if json.Unmarshal(body, &paged) != nil || len(paged.Data) == 0 || json.Unmarshal(paged.Data, &raw) != nil {
			return nil, fmt.Errorf("%w: the project list is not a JSON array", ErrMalformedResponse)
		}
	}
	out := make([]Project, 0, len(raw))
	for _, p := range raw {
		name, _ := p.Name.(string)
		if name == "" {
			continue
		}
		del, _ := p.Deleted.(bool)
		dis, _ := p.Disabled.(bool)
		out = append(out, Project{ID: rawScalar(p.ID), Name: name, Deleted: del, Disabled: dis})
	}
	return out, nil
}

// ParseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110 §10.2.3). A date in the past means "now". Invalid values report
// ok=false so that the caller falls back to its own backoff.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
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
	d := t.Sub(now)
	if d < 0 {
		d = 0
	}
	return d, true
}

// ParsePEMCertificates parses a PEM bundle: at least one CERTIFICATE block,
// no other block types, no trailing garbage.
func ParsePEMCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := bytes.TrimSpace(data)
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
			return nil, fmt.Errorf("certificate %d cannot be parsed: %v", len(certs)+1, err)
		}
		certs = append(certs, c)
		rest = bytes.TrimSpace(rest)
	}
	if len(certs) == 0 {
		return nil, errors.New("contains no PEM certificate")
	}
	return certs, nil
}

// IsLoopbackHost reports whether host is localhost, in 127.0.0.0/8 or ::1.
func IsLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

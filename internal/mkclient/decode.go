package mkclient

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// maxMessageLen bounds, in runes, an upstream string quoted in an error.
	maxMessageLen = 200
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
	// redacted replaces a secret that an upstream text echoes.
	redacted = "[redacted]"
	// withheld replaces an upstream text that a secret cannot be cut out of.
	withheld = "(the message was withheld: it echoed the request's credentials)"
	// MessageWithheld stands for an upstream message that is not one of
	// the known ones (knownMessages).
	MessageWithheld = "(message withheld)"
	// maxTokenBytes bounds an access token: MetaKraftwerk's are a few
	// hundred bytes, and a longer one is not decoded.
	maxTokenBytes = 16 << 10
	// maxFieldBytes bounds an error body's string field that is decoded.
	maxFieldBytes = 1 << 10
)

// quote is clean for an upstream string that may echo what the request
// carried: secret is cut out, as sent and as JSON spells it, before the text
// is bounded, so no prefix of it remains. It is the second line of defence;
// the first is quoting only what is known (decodeError, redirectTarget).
func quote(s, secret string, maxRunes int) string {
	return newRedactor(secret).quote(s, maxRunes)
}

// redactor cuts one secret out of upstream strings (quote).
type redactor struct {
	// forms are the secret as sent, control-stripped, and JSON-escaped
	// with and without HTML escapes.
	forms []string
}

func newRedactor(secret string) redactor {
	if secret == "" {
		return redactor{}
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
	return redactor{forms: forms}
}

func (r redactor) quote(s string, maxRunes int) string {
	s = clean(s, math.MaxInt)
	for _, f := range r.forms {
		if f != "" {
			s = strings.ReplaceAll(s, f, redacted)
		}
	}
	for _, f := range r.forms {
		if f != "" && strings.Contains(s, f) { // the secret overlaps the marker
			return withheld
		}
	}
	return clean(s, maxRunes)
}

// feathersErrors maps FeathersJS's error names to their classNames: the
// only names an error quotes.
var feathersErrors = map[string]string{
	"BadRequest": "bad-request", "NotAuthenticated": "not-authenticated", "PaymentError": "payment-error",
	"Forbidden": "forbidden", "NotFound": "not-found", "MethodNotAllowed": "method-not-allowed",
	"NotAcceptable": "not-acceptable", "Timeout": "timeout", "Conflict": "conflict",
	"LengthRequired": "length-required", "Unprocessable": "unprocessable", "TooManyRequests": "too-many-requests",
	"GeneralError": "general-error", "NotImplemented": "not-implemented", "BadGateway": "bad-gateway",
	"Unavailable": "unavailable",
}

// knownMessages are the messages MetaKraftwerk (FeathersJS) sends that
// carry nothing of the request; an error quotes these, or the status text,
// and nothing else.
var knownMessages = map[string]bool{
	"Invalid login":                      true,
	"Not authenticated":                  true,
	"No auth token":                      true,
	"jwt expired":                        true,
	"invalid signature":                  true,
	"Invalid authentication information": true,
	"Invalid authentication information (strategy not allowed in authStrategies)": true,
	"'email' is required":    true,
	"'password' is required": true,
	"'strategy' is required": true,
	"Too many requests":      true,
	"Page not found":         true,
}

// decodeError reads a FeathersJS error body: the error name when it is a
// known one (by name or className), and the message when it is a known one
// or the status text. A message that is neither is MessageWithheld; a body
// without one gives the status text. A known text that contains secret in
// any form quote knows is dropped all the same.
func decodeError(body []byte, status int, secret string) (name, message string) {
	var fe struct {
		Name      json.RawMessage `json:"name"`
		ClassName json.RawMessage `json:"className"`
		Message   json.RawMessage `json:"message"`
	}
	statusText := http.StatusText(status)
	if statusText == "" {
		statusText = "HTTP " + strconv.Itoa(status)
	}
	if json.Unmarshal(bytes.TrimSpace(body), &fe) != nil {
		return "", statusText
	}
	if n := jsonText(fe.Name, maxFieldBytes); feathersErrors[n] != "" {
		name = n
	} else if class := jsonText(fe.ClassName, maxFieldBytes); class != "" {
		for n, c := range feathersErrors {
			if c == class {
				name = n
			}
		}
	}
	msg := strings.TrimSpace(jsonText(fe.Message, maxFieldBytes))
	switch {
	case len(fe.Message) == 0 || string(fe.Message) == "null" || string(fe.Message) == `""`:
		message = statusText
	case knownMessages[msg] || msg == statusText:
		message = msg
	default:
		message = MessageWithheld
	}
	// A known text that happens to contain the secret is not quoted at all.
	if quote(name, secret, maxMessageLen) != name {
		name = ""
	}
	if quote(message, secret, maxMessageLen) != message {
		message = redacted
	}
	return name, message
}

// redirectTarget is where a redirect points, in the engine's words: the
// configured host, with the target's scheme, when the Location resolves to
// it; else another host. A form-login gateway puts the login into the
// Location's query, and a hostile one into its host, so nothing of the
// Location is repeated.
func redirectTarget(location string, from *url.URL, host string) RedirectTarget {
	u, err := url.Parse(strings.TrimSpace(location))
	if location == "" || err != nil {
		return RedirectUnusable
	}
	if from != nil {
		u = from.ResolveReference(u)
	}
	if u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return RedirectUnusable
	}
	if !sameHost(u, host) {
		return RedirectElsewhere
	}
	return RedirectTarget(u.Scheme + "://" + host)
}

// sameHost reports whether u points at host (the configured host[:port]),
// in any letter case and with the scheme's default port spelt out or not.
func sameHost(u *url.URL, host string) bool {
	defaultPort := map[string]string{"https": "443", "http": "80"}[u.Scheme]
	split := func(hostport string) (string, string) {
		h, p, err := net.SplitHostPort(hostport)
		if err != nil {
			h, p = strings.Trim(hostport, "[]"), ""
		}
		if p == "" {
			p = defaultPort
		}
		return strings.TrimSuffix(strings.ToLower(h), "."), p
	}
	uh, up := split(u.Host)
	ch, cp := split(host)
	return uh == ch && up == cp
}

// decodeLoginResponse reads the top-level accessToken, its claims and the
// user id from a login answer. Unknown fields are ignored, and a field of
// an unexpected type is skipped without being decoded. Errors never contain
// the body or the token.
//
// The answer is checked as JSON once and then read with members (below)
// rather than decoded by reflection: on the path of every fresh creds read
// that decode cost more than the rest of the engine's own work on it.
func decodeLoginResponse(body []byte) (*LoginResult, error) {
	var tok, userID string
	ok := members(body, func(key string, value []byte) {
		switch key {
		case "accessToken":
			tok = jsonText(value, len(value))
		case "user":
			members(value, func(key string, value []byte) {
				if key == "id" {
					userID = idValue(value)
				}
			})
		}
	})
	if !ok {
		return nil, fmt.Errorf("%w: the login answer is not a JSON object", ErrMalformedResponse)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return nil, fmt.Errorf("%w: the login answer has no accessToken", ErrMalformedResponse)
	}
	claims, err := parseClaims(tok)
	if err != nil {
		return nil, err
	}
	if userID == "" {
		userID = claims.Subject
	}
	return &LoginResult{AccessToken: tok, UserID: userID, Claims: claims}, nil
}

// parseClaims decodes a JWT's claims without verifying its signature (the
// HS256 key is MetaKraftwerk's): exp, jti and sub, each of its expected
// type or ignored (exp: refused).
func parseClaims(token string) (Claims, error) {
	var out Claims
	if len(token) > maxTokenBytes {
		return out, fmt.Errorf("%w (it is longer than %d KiB)", ErrNotAJWT, maxTokenBytes>>10)
	}
	malformed := func() error {
		return fmt.Errorf("%w (malformed: expected three base64url segments with JSON header and claims)", ErrNotAJWT)
	}
	// The token is handed on as it came, into files, environments, CI
	// variables and terminals: every segment, the signature too, must be
	// base64url and nothing else (no padding, space or control bytes).
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return out, malformed()
	}
	for _, p := range parts {
		if !isBase64URL(p) {
			return out, malformed()
		}
	}
	header, err1 := decodeSegment(parts[0])
	payload, err2 := decodeSegment(parts[1])
	_, err3 := decodeSegment(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return out, malformed()
	}
	var alg string
	var exp []byte
	if !members(header, func(key string, value []byte) {
		if key == "alg" {
			alg = jsonText(value, maxFieldBytes)
		}
	}) || !members(payload, func(key string, value []byte) {
		switch key {
		case "exp":
			exp = value
		case "jti":
			out.ID = idValue(value)
		case "sub":
			out.Subject = idValue(value)
		}
	}) {
		return Claims{}, malformed()
	}
	if alg == "" {
		return Claims{}, fmt.Errorf("%w (unsupported header)", ErrNotAJWT)
	}
	if exp != nil && string(exp) != "null" {
		seconds, err := strconv.ParseFloat(string(exp), 64)
		if err != nil || exp[0] == '"' {
			return Claims{}, fmt.Errorf("%w (its exp claim is not a number of seconds)", ErrNotAJWT)
		}
		if seconds < 0 || seconds > float64(maxExp.Unix()) {
			return Claims{}, fmt.Errorf("%w (its exp claim is outside the years 1970 to 9999)", ErrNotAJWT)
		}
		out.ExpiresAt = time.Unix(int64(seconds), 0).UTC()
		out.HasExp = true
	}
	return out, nil
}

// members calls fn with the key and raw value of each member of the JSON
// object data, in order, and reports whether data is a JSON object. A key
// given more than once is called for each time (the last one wins for a
// caller that keeps what it is given, as with encoding/json).
func members(data []byte, fn func(key string, value []byte)) bool {
	if !json.Valid(data) {
		return false
	}
	// From here data is valid JSON, so the scan needs no error handling.
	start := skipSpace(data, 0)
	if data[start] != '{' {
		return false
	}
	for i := start + 1; ; {
		i = skipSpace(data, i)
		switch data[i] {
		case '}':
			return true
		case ',':
			i++
			continue
		}
		end := skipString(data, i)
		key := jsonText(data[i:end], maxFieldBytes)
		i = skipSpace(data, end) + 1 // past ':'
		i = skipSpace(data, i)
		end = skipValue(data, i)
		fn(key, data[i:end])
		i = end
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the JSON string that starts at i.
func skipString(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(data)
}

// skipValue returns the index just past the JSON value that starts at i.
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				j = skipString(data, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(data)
	}
	j := i
	for j < len(data) && !strings.ContainsRune(",}] \t\n\r", rune(data[j])) {
		j++
	}
	return j
}

// jsonText is the text of a JSON string of at most limit bytes, or "" for
// anything else.
func jsonText(raw []byte, limit int) string {
	if len(raw) < 2 || raw[0] != '"' || len(raw) > limit {
		return ""
	}
	if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		// A valid JSON string without escapes is its text.
		return string(inner)
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// isBase64URL reports whether seg is a non-empty run of the base64url
// alphabet without padding, as a JWT's segments are.
func isBase64URL(seg string) bool {
	for i := 0; i < len(seg); i++ {
		if c := seg[i]; !isAlnum(c) && c != '-' && c != '_' {
			return false
		}
	}
	return seg != ""
}

// decodeSegment base64url-decodes one JWT segment (isBase64URL).
func decodeSegment(seg string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(seg)
}

// rawScalar renders a JSON number or string as text; anything else is "".
func rawScalar(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || len(raw) > maxFieldBytes:
		return ""
	case raw[0] == '"':
		return clean(jsonText(raw, maxFieldBytes), maxMessageLen)
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
			return n.String()
		}
	}
	return ""
}

// idValue is an id as sent, whole, for ProjectID: a JSON string's text or
// a number's digits; anything else is "".
func idValue(raw []byte) string {
	switch {
	case len(raw) == 0:
		return ""
	case raw[0] == '"':
		return jsonText(raw, len(raw))
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
		return string(raw)
	}
	return ""
}

// projectPage is one answer of the project list, reduced to the projects
// the caller keeps. Feathers answers either with a plain array (pagination
// off) or with a page object; paged is set for the latter.
type projectPage struct {
	projects []Project
	// entries counts the page's entries, named or not (the next $skip).
	entries     int
	paged       bool
	total, skip int
}

// projectEntry is one project as listed. Each field is decoded only when
// it has the expected type; a hostile entry costs no more than its bytes.
type projectEntry struct {
	ID       json.RawMessage `json:"id"`
	Name     json.RawMessage `json:"name"`
	Deleted  jsonTrue        `json:"deleted"`
	Disabled jsonTrue        `json:"disabled"`
}

// jsonTrue is true only for the JSON literal true; any other value is false
// and is skipped without being decoded.
type jsonTrue bool

func (b *jsonTrue) UnmarshalJSON(raw []byte) error {
	*b = jsonTrue(string(raw) == "true")
	return nil
}

// decodeProjects reads one project list answer, keeping the entries whose
// name keep accepts (all when keep is nil). Entries are decoded one at a
// time, so memory stays at one entry whatever the answer holds. Entries
// without a name are skipped.
func decodeProjects(body []byte, keep func(name string) bool) (projectPage, error) {
	var page projectPage
	list := bytes.TrimSpace(body)
	if len(list) == 0 || list[0] != '[' {
		var paged struct {
			Total *int            `json:"total"`
			Skip  int             `json:"skip"`
			Data  json.RawMessage `json:"data"`
		}
		if json.Unmarshal(body, &paged) != nil || len(paged.Data) == 0 || paged.Data[0] != '[' {
			return page, fmt.Errorf("%w: the project list is neither a JSON array nor a page of one", ErrMalformedResponse)
		}
		// A page without a total cannot be followed; it is all there is.
		if paged.Total != nil {
			page.paged, page.total, page.skip = true, *paged.Total, paged.Skip
		}
		list = paged.Data
	}
	dec := json.NewDecoder(bytes.NewReader(list))
	if _, err := dec.Token(); err != nil { // [
		return page, fmt.Errorf("%w: the project list is neither a JSON array nor a page of one", ErrMalformedResponse)
	}
	for dec.More() {
		var e projectEntry
		if err := dec.Decode(&e); err != nil {
			return projectPage{}, fmt.Errorf("%w: the project list is neither a JSON array nor a page of one", ErrMalformedResponse)
		}
		page.entries++
		name := jsonText(e.Name, maxFieldBytes)
		if name == "" || (keep != nil && !keep(name)) {
			continue
		}
		page.projects = append(page.projects, Project{ID: rawScalar(e.ID), Name: name, Deleted: bool(e.Deleted), Disabled: bool(e.Disabled)})
	}
	if _, err := dec.Token(); err != nil { // ]
		return projectPage{}, fmt.Errorf("%w: the project list is neither a JSON array nor a page of one", ErrMalformedResponse)
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
			return nil, fmt.Errorf("certificate %d cannot be parsed as an X.509 certificate", n+1)
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

// isAlnum reports whether c is an ASCII letter or digit.
func isAlnum(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

// tokenCarries reports whether the decoded header or claims of token (a
// token parseClaims accepted) hold password as it is sent, in any letter
// case, or as JSON escapes it.
func tokenCarries(token, password string) bool {
	if password == "" {
		return false
	}
	escaped, _ := json.Marshal(password)
	forms := []string{strings.ToLower(password), strings.ToLower(string(escaped[1 : len(escaped)-1]))}
	parts := strings.Split(token, ".")
	for _, seg := range parts[:min(2, len(parts))] {
		text, err := decodeSegment(seg)
		if err != nil {
			continue
		}
		lower := strings.ToLower(string(text))
		for _, f := range forms {
			if strings.Contains(lower, f) {
				return true
			}
		}
	}
	return false
}

// Package leakcheck lists the spellings in which a secret can leak, for the
// tests that prove none does: the secret as it is, and as a careless
// upstream, a gateway, a log or an encoder re-spells it (URL-encoded,
// HTML-escaped, JSON-escaped, lower- or upper-cased, hex, base64, without
// its control characters, cut short). A test scans what the engine produced for every form of every
// secret it used.
package leakcheck

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"net/url"
	"strings"
	"unicode"
)

// minPrefix is the shortest secret whose first half counts as a leak: the
// half of a shorter one could occur in any text by chance.
const minPrefix = 12

// Form is one spelling of a secret.
type Form struct {
	// Name says how the secret is spelt, never what it is.
	Name  string
	Value string
}

// Forms returns the distinct spellings of secret that must never appear in
// an output, the secret itself first.
func Forms(secret string) []Form {
	if secret == "" {
		return nil
	}
	forms := []Form{
		{"as it is", secret},
		{"URL-encoded (query)", url.QueryEscape(secret)},
		{"URL-encoded (path)", url.PathEscape(secret)},
		{"HTML-escaped", html.EscapeString(secret)},
		{"JSON-escaped", jsonEscaped(secret, true)},
		{"JSON-escaped without HTML escapes", jsonEscaped(secret, false)},
		{"without its control characters", strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return -1
			}
			return r
		}, secret)},
		{"lower-cased", strings.ToLower(secret)},
		{"upper-cased", strings.ToUpper(secret)},
		{"hex", hex.EncodeToString([]byte(secret))},
		{"upper-case hex", strings.ToUpper(hex.EncodeToString([]byte(secret)))},
		{"base64", base64.StdEncoding.EncodeToString([]byte(secret))},
		{"base64url", base64.URLEncoding.EncodeToString([]byte(secret))},
		{"base64 without padding", base64.RawStdEncoding.EncodeToString([]byte(secret))},
		{"base64url without padding", base64.RawURLEncoding.EncodeToString([]byte(secret))},
	}
	if len(secret) >= minPrefix {
		forms = append(forms, Form{"its first half", secret[:len(secret)/2]})
	}
	seen := map[string]bool{}
	out := forms[:0]
	for _, f := range forms {
		if f.Value != "" && !seen[f.Value] {
			seen[f.Value] = true
			out = append(out, f)
		}
	}
	return out
}

func jsonEscaped(s string, escapeHTML bool) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	_ = enc.Encode(s)
	q := bytes.TrimSpace(buf.Bytes())
	return string(q[1 : len(q)-1])
}

// Leak is a secret found in a text.
type Leak struct {
	// Secret is the index of the secret in the list given to Find.
	Secret int
	// Form names the spelling found.
	Form string
}

func (l Leak) String() string { return fmt.Sprintf("secret #%d, %s", l.Secret, l.Form) }

// Find reports each secret of secrets that appears in text in any of its
// forms (the first form found).
func Find(text string, secrets []string) []Leak {
	var leaks []Leak
	for i, s := range secrets {
		for _, f := range Forms(s) {
			if strings.Contains(text, f.Value) {
				leaks = append(leaks, Leak{Secret: i, Form: f.Name})
				break
			}
		}
	}
	return leaks
}

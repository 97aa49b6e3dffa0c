package mkclient

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"unicode"
)

// The words an upstream id is replaced by when it is not shown.
const (
	// NotAnID replaces an id that is not of idShape.
	NotAnID = "(not shown: not an id)"
	// IDEchoesPassword replaces an id that holds a spelling of the
	// login's password.
	IDEchoesPassword = "(not shown: it spells the login's password)" //nolint:gosec // G101: a fixed word, not a credential
	// MaxIDLen is the longest id shown.
	MaxIDLen = 64
)

// UnsafeRune reports the first rune of s that would let a text rewrite
// what a reader sees where it is shown (a terminal, a log, the UI): a
// control character (NUL, the ESC of an ANSI sequence, a newline), a
// bidirectional control (every Bidi_Control code point: U+061C, U+200E,
// U+200F, U+202A–U+202E, U+2066–U+2069), the line and paragraph separators
// U+2028 and U+2029, or any other format character (category Cf, which
// holds the zero-width and the tag characters), or a code point that shows
// as nothing or as what the font makes of it: the other default-ignorable
// ones (the Hangul fillers U+115F, U+1160, U+3164, U+FFA0, the combining
// grapheme joiner U+034F), the variation selectors, the noncharacters
// (U+FFFE among them), private use and surrogates. A value holding one can
// look like another (projects=TEAM_A plus U+3164 reads as TEAM_A). It is
// the one check for the texts an operator writes and the ids MetaKraftwerk
// sends. The no-break space (U+00A0) and other visible spaces pass.
func UnsafeRune(s string) (r rune, at int, ok bool) {
	for i, r := range s {
		if unicode.IsControl(r) || unicode.In(r, unsafeRanges...) {
			return r, i, true
		}
	}
	return 0, 0, false
}

// unsafeRanges are the Unicode classes UnsafeRune refuses besides the
// control characters.
var unsafeRanges = []*unicode.RangeTable{
	unicode.Bidi_Control, unicode.Zl, unicode.Zp, unicode.Cf,
	unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector,
	unicode.Noncharacter_Code_Point, unicode.Co, unicode.Cs,
}

// idShape reports whether s looks like an id: 1 to MaxIDLen letters,
// digits and '.', '_', ':', '-'.
func idShape(s string) bool {
	if s == "" || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && strings.IndexByte("._:-", c) < 0 {
			return false
		}
	}
	return true
}

// isAlnum reports whether c is an ASCII letter or digit.
func isAlnum(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

// ProjectID is what a reader is shown of an id MetaKraftwerk sent (the
// user id, a token's jti and sub): the id itself when it has idShape
// and spells no form of password, else NotAnID or IDEchoesPassword; ""
// stays "". It is a projection, not a filter: nothing is cut or redacted
// out of an id, so no part of one is ever shown.
func ProjectID(id, password string) string {
	switch {
	case id == "":
		return ""
	case !idShape(id):
		return NotAnID
	}
	if _, _, unsafe := UnsafeRune(id); unsafe { // never true of idShape; kept as the one check
		return NotAnID
	}
	if spellsSecret(id, password) {
		return IDEchoesPassword
	}
	return id
}

// minHalf is the shortest half of a password that is looked for in an id.
const minHalf = 4

// spellsSecret reports whether id holds secret, or its first or second
// half, as sent, in any letter case, in hex or in any base64 alphabet.
// Only what idShape allows needs looking for: other spellings cannot be
// in an id that is shown.
func spellsSecret(id, secret string) bool {
	if secret == "" {
		return false
	}
	parts := []string{secret}
	if h := len(secret) / 2; h >= minHalf {
		parts = append(parts, secret[:h], secret[h:])
	}
	lower := strings.ToLower(id)
	for _, p := range parts {
		for _, form := range []string{p, hex.EncodeToString([]byte(p))} {
			if strings.Contains(lower, strings.ToLower(form)) {
				return true
			}
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			if form := enc.EncodeToString([]byte(p)); strings.Contains(id, strings.TrimRight(form, "=")) {
				return true
			}
		}
	}
	return false
}

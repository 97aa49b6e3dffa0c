package mkclient

import (
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"unicode"
)

// The words an upstream id is replaced by when it is not shown.
const (
	// NotAnID replaces an id that is not of its kind's idShape.
	NotAnID = "(not shown: not an id)"
	// IDEchoesPassword replaces an id that holds a spelling of the
	// login's password.
	IDEchoesPassword = "(not shown: it spells the login's password)" //nolint:gosec // G101: a fixed word, not a credential
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

// IDKind is which id MetaKraftwerk sent, and so the one shape it may have.
type IDKind int

const (
	// UserID is the login answer's user id and the token's sub claim:
	// Feathers' numeric id, 1 to 19 decimal digits.
	UserID IDKind = iota
	// TokenID is the token's jti claim: a random UUID.
	TokenID
)

// idShape reports whether s has the shape MetaKraftwerk documents for an
// id of kind: the narrowest that every genuine id has, so that an upstream
// that writes something else into an id (a password, a sentence, an
// escape) has it shown as a fixed word.
func idShape(kind IDKind, s string) bool {
	switch kind {
	case UserID:
		if s == "" || len(s) > 19 {
			return false
		}
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
		return true
	case TokenID:
		if len(s) != 36 {
			return false
		}
		for i := 0; i < len(s); i++ {
			switch c := s[i]; i {
			case 8, 13, 18, 23:
				if c != '-' {
					return false
				}
			default:
				if !isHex(c) {
					return false
				}
			}
		}
		return true
	}
	return false
}

// isHex reports whether c is a hexadecimal digit, in either case.
func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// ProjectID is what a reader is shown of an id MetaKraftwerk sent (the
// user id, a token's jti and sub): the id itself when it has the shape of
// its kind and spells no form of password, else NotAnID or
// IDEchoesPassword; "" stays "". It is a projection, not a filter: nothing
// is cut or redacted out of an id, so no part of one is ever shown.
func ProjectID(kind IDKind, id, password string) string {
	switch {
	case id == "":
		return ""
	case !idShape(kind, id):
		return NotAnID
	}
	if _, _, unsafe := UnsafeRune(id); unsafe { // never true of idShape; kept as the one check
		return NotAnID
	}
	if spellsSecret(id, password) || sharesRun(id, password) {
		return IDEchoesPassword
	}
	return id
}

// The runs of a password that an id must not share: six characters of the
// password as text, or eight hex digits (four bytes) of its hex form, read
// forwards or backwards. Random UUIDs share such a run with a given
// password about once in a million reads, so a genuine id is withheld
// that rarely.
const (
	minTextRun = 6
	minHexRun  = 8
)

// sharesRun reports whether id shares a run of minTextRun characters with
// password or its reverse (any letter case), or of minHexRun with the hex
// of either: the spellings that fit into the digits and hex of idShape.
func sharesRun(id, password string) bool {
	if password == "" {
		return false
	}
	lower := strings.ToLower(password)
	reversed := reverse(lower)
	hexOf := hex.EncodeToString([]byte(password))
	hexRev := hex.EncodeToString([]byte(reverse(password)))
	id = strings.ToLower(id)
	for _, c := range []struct {
		in  []string
		run int
	}{{[]string{lower, reversed}, minTextRun}, {[]string{hexOf, hexRev, reverse(hexOf)}, minHexRun}} {
		for i := 0; i+c.run <= len(id); i++ {
			for _, in := range c.in {
				if strings.Contains(in, id[i:i+c.run]) {
					return true
				}
			}
		}
	}
	return false
}

// reverse is s backwards, rune by rune.
func reverse(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}

// minHalf is the shortest half of a password that is looked for in an id.
const minHalf = 4

// spellsSecret reports whether id holds secret, or its first or second
// half, as sent, in any letter case, in hex or in any base64 alphabet.
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

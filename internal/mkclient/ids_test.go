package mkclient

import (
	"encoding/hex"
	"strings"
	"testing"
)

// What an outside review got past the first projection (1-64 of
// [A-Za-z0-9._:-], the password whole or halved): the password reversed,
// its middle, hex of its reverse, with separators. Each id kind now has
// the one shape MetaKraftwerk documents, and an id of that shape that
// shares a run with the password is withheld too.
func TestProjectIDShapesAndRuns(t *testing.T) {
	const pw = "Hunter2Secret99xyz"
	hexRev := hex.EncodeToString([]byte(reverse(pw)))
	uuidOf := func(h string) string { return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32] }
	for _, c := range []struct {
		kind IDKind
		id   string
		want string
	}{
		{UserID, "1", "1"},
		{UserID, "1234567890123456789", "1234567890123456789"},
		{UserID, "12345678901234567890", NotAnID}, // 20 digits
		{UserID, "-1", NotAnID},
		{UserID, "u-12", NotAnID},
		{TokenID, "0b8f4a52-3c1d-4e7a-9b2f-6d5e4c3b2a19", "0b8f4a52-3c1d-4e7a-9b2f-6d5e4c3b2a19"},
		{TokenID, "0B8F4A52-3C1D-4E7A-9B2F-6D5E4C3B2A19", "0B8F4A52-3C1D-4E7A-9B2F-6D5E4C3B2A19"},
		{TokenID, "0b8f4a523c1d4e7a9b2f6d5e4c3b2a19", NotAnID},
		{TokenID, "12", NotAnID},
		// The review's spellings, none of which has an id's shape.
		{TokenID, reverse(pw), NotAnID},
		{UserID, "nter2Secret99x", NotAnID},
		{TokenID, strings.Join(strings.Split(pw, ""), "-"), NotAnID},
		{TokenID, hexRev, NotAnID},
		// Spellings that do fit a shape: the password's bytes as a UUID,
		// forwards and backwards, and digits the password holds.
		{TokenID, uuidOf(hex.EncodeToString([]byte(pw))), IDEchoesPassword},
		{TokenID, uuidOf(hexRev), IDEchoesPassword},
		{TokenID, uuidOf("0000" + hex.EncodeToString([]byte(pw[4:]))), IDEchoesPassword},
	} {
		if got := ProjectID(c.kind, c.id, pw); got != c.want {
			t.Errorf("ProjectID(%d, %q) = %q, want %q", c.kind, c.id, got, c.want)
		}
	}
	for _, c := range []struct{ id, pw string }{
		{"20241231", "Secret20241231!"}, // six digits in a row of the password
		{"13214202", "Secret20241231!"}, // the same, backwards
		{"99", "99"},                    // the password whole
	} {
		if got := ProjectID(UserID, c.id, c.pw); got != IDEchoesPassword {
			t.Errorf("ProjectID(UserID, %q) with password %q = %q, want %q", c.id, c.pw, got, IDEchoesPassword)
		}
	}
}

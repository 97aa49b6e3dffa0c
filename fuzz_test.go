package metakraftwerk

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Fuzz targets for the engine's own parsers of outside data: JWT claims and
// role input normalisation. Seeds run in `make test`; `make fuzz` explores.

func FuzzParseAccessToken(f *testing.F) {
	signed := func(claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
		tok.Header["typ"] = "access"
		s, _ := tok.SignedString([]byte("k"))
		return s
	}
	f.Add(signed(jwt.MapClaims{"exp": 1800000000, "jti": "abc", "sub": "7"}))
	f.Add(signed(jwt.MapClaims{"exp": "soon"}))
	f.Add(signed(jwt.MapClaims{"exp": 1e300, "jti": 5}))
	f.Add(signed(jwt.MapClaims{}))
	f.Add("a.b.c")
	f.Add("not a jwt")
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := parseAccessToken(token)
		if err != nil {
			if len(token) > 16 && strings.Contains(err.Error(), token) {
				t.Fatal("error quotes the token")
			}
			return
		}
		if claims.HasExp == claims.ExpiresAt.IsZero() && claims.HasExp {
			t.Fatal("HasExp without an expiry")
		}
		if len(claims.ID) > 128 || len(claims.Subject) > 128 {
			t.Fatal("claims not bounded")
		}
		// Whatever the claims, the lease rules never produce a lease that
		// outlives the token or a non-positive one.
		now := time.Unix(1_700_000_000, 0)
		exp, assumed := claims.expiry(now)
		l, err := computeLease(leaseInput{Now: now, ExpiresAt: exp, ExpAssumed: assumed, Leeway: time.Minute})
		if err == nil && (l.TTL < time.Second || l.TTL > l.MaxTTL || now.Add(l.MaxTTL).After(l.ExpiresAt)) {
			t.Fatalf("bad lease %+v", l)
		}
	})
}

func FuzzRoleInput(f *testing.F) {
	f.Add("team-a.ci_1", "ci@example.com", "A, B ,A")
	f.Add("a/b", "CI <ci@example.com>", ",")
	f.Add(".x", "ci@", " ")
	f.Fuzz(func(t *testing.T, name, email, projects string) {
		if validateRoleName(name) == "" {
			if strings.ContainsAny(name, "/ \t\n") || len(name) > maxRoleNameLen || name == "" {
				t.Fatalf("accepted role name %q", name)
			}
		}
		if checkEmail(email) == "" && (!strings.Contains(email, "@") || strings.ContainsAny(email, " <>")) {
			t.Fatalf("accepted email %q", email)
		}
		var p problems
		out := normaliseProjects(strings.Split(projects, ","), &p)
		seen := map[string]bool{}
		for _, name := range out {
			if name == "" || strings.TrimSpace(name) != name || seen[name] {
				t.Fatalf("bad project list %q from %q", out, projects)
			}
			seen[name] = true
		}
	})
}

package metakraftwerk

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Fuzz targets for the engine's own rules over outside data: the lease
// rules for any token life, and role input normalisation. Seeds run in
// `make test`; `make fuzz` explores.

func FuzzComputeLease(f *testing.F) {
	f.Add(int64(72000), int64(60), int64(0), int64(0), false)
	f.Add(int64(61), int64(60), int64(0), int64(0), false)
	f.Add(int64(-5), int64(0), int64(3600), int64(7200), true)
	f.Add(int64(1)<<40, int64(71999), int64(1), int64(0), false)
	f.Fuzz(func(t *testing.T, remaining, leeway, ttl, maxTTL int64, assumed bool) {
		// The ranges config and role validation allow, and any token life
		// between expired and the year 9999.
		now := time.Unix(1_700_000_000, 0)
		if remaining < -now.Unix() || remaining > 250_000_000_000 || leeway < 0 || leeway >= 72000 || ttl < 0 || maxTTL < 0 ||
			ttl > 1<<32 || maxTTL > 1<<32 {
			return
		}
		exp := now.Add(time.Duration(remaining) * time.Second)
		l, err := computeLease(leaseInput{Now: now, ExpiresAt: exp, ExpAssumed: assumed, Leeway: time.Duration(leeway) * time.Second,
			RoleTTL: time.Duration(ttl) * time.Second, RoleMaxTTL: time.Duration(maxTTL) * time.Second})
		if err != nil {
			var tooShort *errTokenTooShort
			if !errors.As(err, &tooShort) || remaining-leeway >= 1 {
				t.Fatalf("remaining %ds, leeway %ds: %v", remaining, leeway, err)
			}
			return
		}
		// Never a lease that outlives the token less leeway, exceeds a
		// role cap, or is shorter than a second.
		if l.TTL < time.Second || l.TTL > l.MaxTTL || now.Add(l.MaxTTL).Add(time.Duration(leeway)*time.Second).After(exp) ||
			(ttl > 0 && l.TTL > time.Duration(ttl)*time.Second) || (maxTTL > 0 && l.TTL > time.Duration(maxTTL)*time.Second) ||
			l.TTL%time.Second != 0 || (len(l.Warnings) > 0) != assumed {
			t.Fatalf("bad lease %+v for remaining %ds leeway %ds ttl %d max_ttl %d", l, remaining, leeway, ttl, maxTTL)
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

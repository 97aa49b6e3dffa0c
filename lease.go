package metakraftwerk

import (
	"fmt"
	"time"
)

// leaseInput is everything the lease rules depend on.
type leaseInput struct {
	Now time.Time
	// ExpiresAt is the token's exp or, when it has none, the expiry assumed
	// when it was issued (ExpAssumed); see login.
	ExpiresAt  time.Time
	ExpAssumed bool
	// Leeway is the config's expiry_leeway.
	Leeway time.Duration
	// RoleTTL and RoleMaxTTL are the role's caps; zero means unset.
	RoleTTL, RoleMaxTTL time.Duration
}

// lease is the outcome of the lease rules.
type lease struct {
	// TTL is the lease duration handed to Vault (whole seconds).
	TTL time.Duration
	// MaxTTL is remaining token life less leeway: nothing may extend past it.
	MaxTTL time.Duration
	// Warnings go into the Vault response.
	Warnings []string
}

// errTokenTooShort is returned when the token's remaining life does not
// exceed the leeway; a lease would end before it starts.
type errTokenTooShort struct {
	ExpiresAt time.Time
	Remaining time.Duration
	Leeway    time.Duration
}

func (e *errTokenTooShort) Error() string {
	if e.Remaining <= 0 {
		return fmt.Sprintf("MetaKraftwerk issued a token that is already expired (exp %s, %s ago); check the clocks of Vault and MetaKraftwerk",
			e.ExpiresAt.Format(time.RFC3339), (-e.Remaining).Truncate(time.Second))
	}
	return fmt.Sprintf("MetaKraftwerk issued a token that expires in %s (exp %s), not more than expiry_leeway (%s); no lease can be issued. Check the clocks of Vault and MetaKraftwerk, or lower expiry_leeway",
		e.Remaining.Truncate(time.Second), e.ExpiresAt.Format(time.RFC3339), e.Leeway)
}

// computeLease applies the lease rules:
//   - remaining = exp − now; a token without exp is assumed to live the
//     documented 20 hours from its issue, with a warning;
//   - usable = remaining − leeway, which must be at least one second;
//   - TTL = usable, capped by the role's ttl and max_ttl when set,
//     truncated to whole seconds (Vault's lease precision);
//   - MaxTTL = usable, so nothing can extend a lease past the token.
//
// Vault itself then caps TTL by the mount's and the system's max lease TTL.
func computeLease(in leaseInput) (lease, error) {
	var out lease
	if in.ExpAssumed {
		out.Warnings = append(out.Warnings, fmt.Sprintf(
			"the access token has no exp claim; assuming MetaKraftwerk's documented %s lifetime, so the lease may outlive or undercut the real token",
			formatDuration(documentedTokenLifetime)))
	}
	remaining := in.ExpiresAt.Sub(in.Now)
	usable := (remaining - in.Leeway).Truncate(time.Second)
	if usable < time.Second {
		return lease{}, &errTokenTooShort{ExpiresAt: in.ExpiresAt, Remaining: remaining, Leeway: in.Leeway}
	}
	ttl := usable
	if in.RoleTTL > 0 && in.RoleTTL < ttl {
		ttl = in.RoleTTL
	}
	if in.RoleMaxTTL > 0 && in.RoleMaxTTL < ttl {
		ttl = in.RoleMaxTTL
	}
	out.TTL = ttl.Truncate(time.Second)
	out.MaxTTL = usable
	return out, nil
}

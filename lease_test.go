package metakraftwerk

// Every lease rule, in one place, with an injected clock.

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestComputeLease(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	exp := now.Add(20 * time.Hour)
	tests := []struct {
		name       string
		in         leaseInput
		wantTTL    time.Duration
		wantMaxTTL time.Duration
		warning    string
		err        string
	}{
		{"ttl is remaining less leeway", leaseInput{Now: now, ExpiresAt: exp, Leeway: time.Minute},
			20*time.Hour - time.Minute, 20*time.Hour - time.Minute, "", ""},
		{"zero leeway", leaseInput{Now: now, ExpiresAt: exp},
			20 * time.Hour, 20 * time.Hour, "", ""},
		{"later now shortens the lease", leaseInput{Now: now.Add(5 * time.Hour), ExpiresAt: exp, Leeway: time.Minute},
			15*time.Hour - time.Minute, 15*time.Hour - time.Minute, "", ""},
		{"role ttl caps", leaseInput{Now: now, ExpiresAt: exp, Leeway: time.Minute, RoleTTL: time.Hour},
			time.Hour, 20*time.Hour - time.Minute, "", ""},
		{"role ttl above remaining does not extend", leaseInput{Now: now, ExpiresAt: exp, Leeway: time.Minute, RoleTTL: 30 * time.Hour},
			20*time.Hour - time.Minute, 20*time.Hour - time.Minute, "", ""},
		{"role max_ttl caps", leaseInput{Now: now, ExpiresAt: exp, Leeway: time.Minute, RoleMaxTTL: 2 * time.Hour},
			2 * time.Hour, 20*time.Hour - time.Minute, "", ""},
		{"smaller of ttl and max_ttl wins", leaseInput{Now: now, ExpiresAt: exp, Leeway: time.Minute, RoleTTL: time.Hour, RoleMaxTTL: 2 * time.Hour},
			time.Hour, 20*time.Hour - time.Minute, "", ""},
		{"sub-second remainder truncated", leaseInput{Now: now.Add(300 * time.Millisecond), ExpiresAt: exp, Leeway: time.Minute},
			20*time.Hour - time.Minute - time.Second, 20*time.Hour - time.Minute - time.Second, "", ""},
		{"no exp assumes 20h and warns", leaseInput{Now: now, ExpiresAt: exp, ExpAssumed: true, Leeway: time.Minute},
			20*time.Hour - time.Minute, 20*time.Hour - time.Minute, "no exp claim; assuming MetaKraftwerk's documented 20h lifetime", ""},
		{"one second left after leeway is enough", leaseInput{Now: exp.Add(-61 * time.Second), ExpiresAt: exp, Leeway: time.Minute},
			time.Second, time.Second, "", ""},
		{"remaining equal to leeway", leaseInput{Now: exp.Add(-time.Minute), ExpiresAt: exp, Leeway: time.Minute},
			0, 0, "", "not more than expiry_leeway"},
		{"remaining within leeway", leaseInput{Now: exp.Add(-30 * time.Second), ExpiresAt: exp, Leeway: time.Minute},
			0, 0, "", "expires in 30s"},
		{"already expired", leaseInput{Now: exp.Add(time.Hour), ExpiresAt: exp, Leeway: time.Minute},
			0, 0, "", "already expired"},
		{"expired with zero leeway", leaseInput{Now: exp, ExpiresAt: exp},
			0, 0, "", "already expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := computeLease(tt.in)
			if tt.err != "" {
				var tooShort *errTokenTooShort
				if !errors.As(err, &tooShort) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want errTokenTooShort containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.TTL != tt.wantTTL || got.MaxTTL != tt.wantMaxTTL {
				t.Errorf("got ttl %s max %s; want %s %s", got.TTL, got.MaxTTL, tt.wantTTL, tt.wantMaxTTL)
			}
			if tt.warning == "" && len(got.Warnings) > 0 {
				t.Errorf("unexpected warnings %v", got.Warnings)
			}
			if tt.warning != "" && (len(got.Warnings) != 1 || !strings.Contains(got.Warnings[0], tt.warning)) {
				t.Errorf("warnings %v, want one containing %q", got.Warnings, tt.warning)
			}
			if got.TTL > got.MaxTTL {
				t.Errorf("TTL %s exceeds MaxTTL %s", got.TTL, got.MaxTTL)
			}
		})
	}
}

// The same rules through the engine: the stand-in issues tokens on its
// clock, the engine decides leases on its own (skewed) clock.
func TestCredsLeaseFollowsExp(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	issuedAt := env.clock.Now()

	resp := env.mustRead("creds/ci")
	if got, want := resp.Secret.TTL, 20*time.Hour-time.Minute; got != want {
		t.Errorf("TTL = %s, want %s", got, want)
	}
	if resp.Secret.MaxTTL != 20*time.Hour-time.Minute || resp.Secret.Renewable {
		t.Errorf("MaxTTL %s renewable %v", resp.Secret.MaxTTL, resp.Secret.Renewable)
	}
	if resp.Data[fieldExpiresAt] != issuedAt.Add(20*time.Hour).Format(time.RFC3339) {
		t.Errorf("expires_at = %v", resp.Data[fieldExpiresAt])
	}

	// Vault's clock runs 3 hours ahead of MetaKraftwerk's.
	env.clock.Advance(3 * time.Hour)
	resp = env.mustRead("creds/ci")
	if got, want := resp.Secret.TTL, 17*time.Hour-time.Minute; got != want {
		t.Errorf("skewed TTL = %s, want %s", got, want)
	}

	env.mustWrite("config", map[string]any{fieldExpiryLeeway: "10m"})
	env.mustWrite("roles/ci", map[string]any{fieldTTL: "2h", fieldMaxTTL: "3h"})
	resp = env.mustRead("creds/ci")
	if resp.Secret.TTL != 2*time.Hour || resp.Secret.MaxTTL != 17*time.Hour-10*time.Minute {
		t.Errorf("with role caps TTL %s MaxTTL %s", resp.Secret.TTL, resp.Secret.MaxTTL)
	}
}

func TestCredsTokenWithinLeeway(t *testing.T) {
	env := newTestBackend(t, withTokenLifetime(90*time.Second))
	env.createRole("ci", nil)
	env.mustWrite("config", map[string]any{fieldExpiryLeeway: "2m"})
	resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
	if statusOf(resp, err) != 502 || !strings.Contains(errorText(resp, err), "not more than expiry_leeway (2m0s)") {
		t.Fatalf("status %d %q", statusOf(resp, err), errorText(resp, err))
	}
	// Lowering the leeway makes the same tokens usable.
	env.mustWrite("config", map[string]any{fieldExpiryLeeway: "30s"})
	resp = env.mustRead("creds/ci")
	if resp.Secret.TTL != time.Minute {
		t.Fatalf("TTL %s, want 1m", resp.Secret.TTL)
	}
}

func TestCredsNoExpWarns(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	env.mk.SetFaults(devserverFaultsMode("no-exp"))
	resp := env.mustRead("creds/ci")
	if resp.Secret.TTL != 20*time.Hour-time.Minute {
		t.Errorf("TTL %s", resp.Secret.TTL)
	}
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "no exp claim") {
		t.Errorf("warnings = %v", resp.Warnings)
	}
	if resp.Data[fieldExpiresAt] != env.clock.Now().Add(20*time.Hour).Format(time.RFC3339) {
		t.Errorf("expires_at = %v", resp.Data[fieldExpiresAt])
	}
}

// A reused token without exp keeps the expiry assumed when it was issued:
// later readers get shorter leases, never a fresh 20 hours.
func TestCredsNoExpReusedKeepsAssumedExpiry(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldReuseTokens: true})
	env.mk.SetFaults(devserverFaultsMode("no-exp"))
	first := env.mustRead("creds/ci")
	env.clock.Advance(2 * time.Hour)
	second := env.mustRead("creds/ci")
	if first.Data[fieldAccessToken] != second.Data[fieldAccessToken] {
		t.Fatal("token not reused")
	}
	if second.Secret.TTL != first.Secret.TTL-2*time.Hour || second.Data[fieldExpiresAt] != first.Data[fieldExpiresAt] {
		t.Fatalf("second lease %s (expires_at %v), want %s (expires_at %v)",
			second.Secret.TTL, second.Data[fieldExpiresAt], first.Secret.TTL-2*time.Hour, first.Data[fieldExpiresAt])
	}
	if len(second.Warnings) != 1 || !strings.Contains(second.Warnings[0], "no exp claim") {
		t.Errorf("warnings %v", second.Warnings)
	}
}

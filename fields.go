package metakraftwerk

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/rolename"
)

// Field names shared by schemas, responses, storage and tests.
const (
	fieldBaseURL              = "base_url"
	fieldCACert               = "ca_cert"
	fieldRequestTimeout       = "request_timeout"
	fieldMaxRetries           = "max_retries"
	fieldExpiryLeeway         = "expiry_leeway"
	fieldRejectedLoginBackoff = "rejected_login_backoff"
	fieldMaxUpstreamTime      = "max_upstream_time"
	fieldMetricsRoles         = "metrics_roles"
	fieldStored               = "stored"

	fieldName              = "name"
	fieldEmail             = "email"
	fieldPassword          = "password"
	fieldPasswordSet       = "password_set"
	fieldTTL               = "ttl"
	fieldMaxTTL            = "max_ttl"
	fieldDescription       = "description"
	fieldProjects          = "projects"
	fieldProjectCount      = "project_count"
	fieldVerify            = "verify"
	fieldReuseTokens       = "reuse_tokens" //nolint:gosec // G101: a field name, not a credential
	fieldReuseMinRemaining = "reuse_min_remaining"

	fieldMaxConcurrentLogins = "max_concurrent_logins"

	fieldAccessToken = "access_token"
	fieldTokenType   = "token_type"
	fieldExpiresAt   = "expires_at"
	fieldUserID      = "user_id"
	fieldRole        = "role"
	fieldTokenID     = "token_id"

	fieldRetired = "retired"

	fieldAfter = "after"
	fieldLimit = "limit"

	fieldUpdatedAt            = "updated_at"
	fieldPasswordUpdatedAt    = "password_updated_at"
	fieldVerifiedAt           = "verified_at"
	fieldLastLoginAt          = "last_login_at"
	fieldLastError            = "last_error"
	fieldLastErrorAt          = "last_error_at"
	fieldLoginRefusedUntil    = "login_refused_until"
	fieldSharedTokenID        = "shared_token_id"
	fieldSharedTokenExpiresAt = "shared_token_expires_at" //nolint:gosec // G101: a field name, not a credential

	fieldRetryAfter = "retry_after"
	fieldRetryNow   = "retry_now"

	fieldVerified        = "verified"
	fieldMissingProjects = "missing_projects"
	fieldUpstreamLatency = "upstream_latency"
)

// operationPrefix starts every OpenAPI operation id of the engine.
const operationPrefix = "metakraftwerk"

const maxRoleNameLen = rolename.MaxLen

// namePattern captures any role name so that a bad one gets a 400 naming
// the field instead of Vault's generic "unsupported path".
const namePattern = `(?P<name>.+)`

// roleNameField is the schema of <name> in every path that takes a role.
var roleNameField = &framework.FieldSchema{
	Type: framework.TypeString,
	Description: fmt.Sprintf("Name of the role: letters, digits, '-', '_' and '.', starting and ending with a letter or digit; "+
		"at most %d characters.", maxRoleNameLen),
	Required: true,
}

// validateRoleName returns a user-facing problem with name, or "".
func validateRoleName(name string) string {
	switch {
	case len(name) > maxRoleNameLen:
		return fmt.Sprintf("%s: must be at most %d characters, got %d", fieldName, maxRoleNameLen, len(name))
	case !rolename.Re.MatchString(name):
		return fmt.Sprintf("%s: %q is not a valid role name; use letters, digits, '-', '_' and '.', starting and ending with a letter or digit", fieldName, name)
	}
	return ""
}

// unsafeText reports, naming the rune and where, the first rune of s that
// would let a stored text rewrite what a reader sees where it is shown
// (mkclient.UnsafeRune: control, format and bidirectional characters and
// the line separators), or "".
func unsafeText(s string) string {
	if r, i, ok := mkclient.UnsafeRune(s); ok {
		return fmt.Sprintf("must not contain control, format or bidirectional characters or line separators (U+%04X at byte %d)", r, i)
	}
	return ""
}

// problems collects every validation failure of one request so that the
// caller sees them all at once.
type problems []string

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, field+": "+fmt.Sprintf(format, args...))
}

// response returns the 400 for the collected problems, or nil when there are none.
func (p problems) response() *logical.Response {
	if len(p) == 0 {
		return nil
	}
	return logical.ErrorResponse(strings.Join(p, "; "))
}

// unknownFields reports fields sent that the path does not define. Vault
// itself only warns about them; for config and roles a misspelt field would
// silently keep an old value, so the engine rejects the request.
func unknownFields(d *framework.FieldData, p *problems) {
	var unknown []string
	for k := range d.Raw {
		if _, ok := d.Schema[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		p.add(k, "unknown field")
	}
}

// formatDuration prints whole hours and minutes compactly: 20h, 1h30m, 45s.
func formatDuration(d time.Duration) string {
	s := d.String()
	for _, suffix := range []string{"m0s", "h0m"} {
		if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
			s = s[:len(s)-len(suffix)+1]
		}
	}
	return s
}

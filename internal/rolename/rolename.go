// Package rolename is the rule for a role's name, which the engine
// enforces. The Terraform provider checks it at plan time from a copy of
// its own (terraform-provider-mkvault/internal/rolename: the provider's
// module does not require this one); TestProviderRoleNameRule keeps the two
// the same.
package rolename

import "regexp"

// MaxLen bounds role names (they become storage keys and lease paths).
const MaxLen = 128

// Pattern is Vault's generic name rule: letters, digits, '-', '_' and '.',
// not starting or ending with a separator.
const Pattern = `^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$`

// Re is Pattern compiled.
var Re = regexp.MustCompile(Pattern)

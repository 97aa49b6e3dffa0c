// Package rolename is the engine's rule for a role's name, which the
// provider checks at plan time so that a bad name fails before anything is
// written. It is a copy of the engine's internal/rolename: the provider's
// module stands alone, so that it can be published from a repository of
// its own. The engine's TestProviderRoleNameRule fails when the two differ.
package rolename

import "regexp"

// MaxLen bounds role names (they become storage keys and lease paths).
const MaxLen = 128

// Pattern is Vault's generic name rule: letters, digits, '-', '_' and '.',
// not starting or ending with a separator.
const Pattern = `^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$`

// Re is Pattern compiled.
var Re = regexp.MustCompile(Pattern)

// Package rolename is the rule for a role's name, shared by the engine,
// which enforces it, and the Terraform provider, which checks it at plan
// time so that a bad name fails before anything is written.
package rolename

import "regexp"

// MaxLen bounds role names (they become storage keys and lease paths).
const MaxLen = 128

// Pattern is Vault's generic name rule: letters, digits, '-', '_' and '.',
// not starting or ending with a separator.
const Pattern = `^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$`

// Re is Pattern compiled.
var Re = regexp.MustCompile(Pattern)

package provider

import (
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/terraform-provider-mkvault/internal/rolename"
)

// roleNameValidators hold a role name to the engine's own rule at plan
// time, so that a bad name fails before anything is written.
func roleNameValidators() []validator.String {
	return []validator.String{
		stringvalidator.LengthAtMost(rolename.MaxLen),
		stringvalidator.RegexMatches(rolename.Re, "must be letters, digits, '-', '_' and '.', starting and ending with a letter or digit"),
	}
}

// seconds holds a duration in whole seconds to the engine's rule: not
// negative.
func seconds() []validator.Int64 { return []validator.Int64{int64validator.AtLeast(0)} }

// roleNameDescription is the rule in words, for schema descriptions.
var roleNameDescription = fmt.Sprintf("letters, digits, '-', '_' and '.', starting and ending with a letter or digit; at most %d characters", rolename.MaxLen)

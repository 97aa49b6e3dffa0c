//go:build acceptance

package acceptance

import (
	"os"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
)

// TestAccServerWords: where nothing is mounted, Vault's (or OpenBao's) own
// 404 text reaches the user, for the creds, the config and a role, and is
// not replaced by one of the provider's.
func TestAccServerWords(t *testing.T) {
	newAccStack(t)
	noRoute := regexp.MustCompile(`(?s)Code: 404.*no handler for route "?nowhere/`)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers(),
		TerraformVersionChecks:   requireWriteOnly,
		Steps: []resource.TestStep{
			{Config: `ephemeral "mkvault_creds" "x" {
  mount = "nowhere"
  role  = "ci"
}`, ExpectError: noRoute},
			{Config: `data "mkvault_role" "x" {
  mount = "nowhere"
  name  = "ci"
}`, ExpectError: noRoute},
		},
	})
}

// optionalPassword is var.password as the examples declare theirs: null
// unless given.
const optionalPassword = `
variable "password" {
  type      = string
  sensitive = true
  ephemeral = true
  default   = null
}
`

// TestAccPlanTimeErrors: a bad value and a missing password fail at plan,
// before anything is written, with the attribute and the role named; a
// null password where none is sent is fine (TestAccExample*).
func TestAccPlanTimeErrors(t *testing.T) {
	s := newAccStack(t)
	// No password is given: the variable is null.
	os.Unsetenv("TF_VAR_password")
	role := func(body string) string {
		return optionalPassword + `
resource "mkvault_role" "x" {
  email = "ci@example.com"
` + body + `
}`
	}
	before := s.logins()
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers(),
		TerraformVersionChecks:   requireWriteOnly,
		Steps: []resource.TestStep{
			{Config: role(`name = "-bad-"
  password_wo = var.password
  password_wo_version = 1`), PlanOnly: true, ExpectError: regexp.MustCompile(`(?s)Attribute name must be letters, digits`)},
			{Config: role(`name = "ci"
  password_wo = var.password
  password_wo_version = 0`), PlanOnly: true, ExpectError: regexp.MustCompile(`(?s)password_wo_version.*at least 1`)},
			{Config: role(`name = "ci"
  password_wo = var.password
  ttl = -1`), PlanOnly: true, ExpectError: regexp.MustCompile(`(?s)Attribute ttl value must be at least 0`)},
			{Config: role(`name = "ci"
  password_wo = var.password
  password_wo_version = 1`), PlanOnly: true, ExpectError: regexp.MustCompile(`(?s)No password to send.*role "ci": creating it sends\s+password_wo, but password_wo is null`)},
			{Config: `ephemeral "mkvault_creds" "x" {
  role_id = "ci"
}`, ExpectError: regexp.MustCompile(`(?s)must be <mount>/<name>`)},
			{Config: `ephemeral "mkvault_creds" "x" {
  role_id = "metakraftwerk/ci"
  role    = "ci"
}`, ExpectError: regexp.MustCompile(`(?s)role_id.*role`)},
		},
	})
	if got := s.logins() - before; got != 0 {
		t.Errorf("the refused plans sent %d logins", got)
	}
	if roles, err := s.vault.Logical().List("metakraftwerk/roles"); err != nil || roles != nil {
		t.Errorf("the refused plans wrote roles: %v %v", roles, err)
	}
}

// TestAccRenameNeedsPassword: a new name replaces the role, which creates
// it again, so a plan without the password fails there, naming the role.
func TestAccRenameNeedsPassword(t *testing.T) {
	s := newAccStack(t)
	role := func(name string) string {
		return optionalPassword + `
resource "mkvault_role" "x" {
  name                = "` + name + `"
  email               = "` + accEmail + `"
  password_wo         = var.password
  password_wo_version = 1
  projects            = ["CI_PROJECT"]
}`
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers(),
		TerraformVersionChecks:   requireWriteOnly,
		Steps: []resource.TestStep{
			{Config: role("ci")},
			{PreConfig: func() { os.Unsetenv("TF_VAR_password") }, Config: role("ci-renamed"), PlanOnly: true,
				ExpectError: regexp.MustCompile(`(?s)role "ci-renamed": creating it sends\s+password_wo, but password_wo is null`)},
			// Nothing was touched, and without the rename the same plan
			// needs no password.
			{PreConfig: func() {
				if role, err := s.vault.Logical().Read("metakraftwerk/roles/ci"); err != nil || role == nil {
					t.Errorf("the refused rename touched the role: %v %v", role, err)
				}
			}, Config: role("ci"), PlanOnly: true},
		},
	})
}

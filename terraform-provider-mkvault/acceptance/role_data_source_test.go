//go:build acceptance

package acceptance

import (
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
)

// TestAccRoleDataSource reads a role's settings and its status after a
// creds read.
func TestAccRoleDataSource(t *testing.T) {
	s := newAccStack(t)
	s.mustWrite("metakraftwerk/roles/ci", map[string]any{"email": accEmail, "password": accPassword, "projects": "CI_PROJECT", "reuse_tokens": true})
	if _, err := s.vault.Logical().Read("metakraftwerk/creds/ci"); err != nil {
		t.Fatal(err)
	}
	stateChecks, planChecks := s.checks()
	const name = "data.mkvault_role.ci"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers(),
		TerraformVersionChecks:   requireWriteOnly,
		Steps: []resource.TestStep{{
			Config:            `data "mkvault_role" "ci" { name = "ci" }`,
			ConfigStateChecks: stateChecks, ConfigPlanChecks: planChecks,
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr(name, "email", accEmail),
				resource.TestCheckResourceAttr(name, "projects.0", "CI_PROJECT"),
				resource.TestCheckResourceAttr(name, "reuse_tokens", "true"),
				resource.TestCheckResourceAttr(name, "password_set", "true"),
				resource.TestCheckResourceAttrSet(name, "last_login_at"),
				resource.TestCheckResourceAttrSet(name, "shared_token_id"),
				resource.TestCheckResourceAttr(name, "last_error", ""),
			),
		}},
	})
}

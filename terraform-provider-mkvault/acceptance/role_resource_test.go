//go:build acceptance

package acceptance

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

// roleConfig is a role with the password from an ephemeral variable, so
// that it is in no file either.
func roleConfig(ttl, version int) string {
	return fmt.Sprintf(`
variable "password" {
  type      = string
  sensitive = true
  ephemeral = true
}

resource "mkvault_role" "ci" {
  name                  = "ci"
  email                 = %q
  password_wo           = var.password
  password_wo_version   = %d
  projects              = ["CI_PROJECT"]
  ttl                   = %d
  reuse_tokens          = true
  max_concurrent_logins = 3
}
`, accEmail, version, ttl)
}

// TestAccRole walks a role's life: create, an empty re-plan, a ttl change,
// a password change alone, a password_wo_version bump, import, drift made
// with the API, and destroy; counting the logins MetaKraftwerk sees, and
// with no secret in any state, plan, file or log.
func TestAccRole(t *testing.T) {
	s := newAccStack(t)
	stateChecks, planChecks := s.checks()
	// step applies config after first (when given), asserting that the
	// apply sends exactly logins logins upstream.
	step := func(config string, first func(), logins int64, checks ...resource.TestCheckFunc) resource.TestStep {
		count, counted := s.expectLogins(logins)
		pre := count
		if first != nil {
			pre = func() { first(); count() }
		}
		return resource.TestStep{PreConfig: pre, Config: config, Check: resource.ComposeAggregateTestCheckFunc(append(checks, counted)...),
			ConfigStateChecks: stateChecks, ConfigPlanChecks: planChecks}
	}
	const name = "mkvault_role.ci"
	var firstUpdate, passwordUpdated string
	keep := func(attr string, into *string) resource.TestCheckFunc {
		return func(st *terraform.State) error {
			*into = st.RootModule().Resources[name].Primary.Attributes[attr]
			return nil
		}
	}
	same := func(attr string, want *string) resource.TestCheckFunc {
		return func(st *terraform.State) error {
			if got := st.RootModule().Resources[name].Primary.Attributes[attr]; got != *want {
				return fmt.Errorf("%s changed from %q to %q", attr, *want, got)
			}
			return nil
		}
	}

	create := step(roleConfig(3600, 1), nil, 1,
		resource.TestCheckResourceAttr(name, "id", "metakraftwerk/ci"),
		resource.TestCheckResourceAttr(name, "password_set", "true"),
		resource.TestCheckResourceAttr(name, "ttl", "3600"),
		resource.TestCheckResourceAttr(name, "projects.0", "CI_PROJECT"),
		resource.TestCheckResourceAttr(name, "max_concurrent_logins", "3"),
		func(*terraform.State) error { // and the engine has it
			role, err := s.vault.Logical().Read("metakraftwerk/roles/ci")
			if err != nil {
				return fmt.Errorf("reading the engine's role: %w", err)
			}
			if role == nil || fmt.Sprint(role.Data["max_concurrent_logins"]) != "3" {
				return fmt.Errorf("the engine's role: %v", role)
			}
			return nil
		},
		resource.TestCheckResourceAttrSet(name, "verified_at"),
		resource.TestCheckNoResourceAttr(name, "password_wo"),
		keep("updated_at", &firstUpdate), keep("password_updated_at", &passwordUpdated))

	// The same configuration again: an empty plan, and an apply of it
	// writes nothing.
	replan := step(roleConfig(3600, 1), nil, 0, same("updated_at", &firstUpdate))
	replan.ConfigPlanChecks.PreApply = append([]plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}, replan.ConfigPlanChecks.PreApply...)

	ttl := step(roleConfig(600, 1), nil, 0, resource.TestCheckResourceAttr(name, "ttl", "600"), same("password_updated_at", &passwordUpdated))
	ttl.ConfigPlanChecks.PreApply = append([]plancheck.PlanCheck{plancheck.ExpectResourceAction(name, plancheck.ResourceActionUpdate)}, ttl.ConfigPlanChecks.PreApply...)

	// A new password alone is not a change: write-only values are not in
	// the plan. Nothing is sent.
	newPassword := step(roleConfig(600, 1), func() { s.usePassword("pw-rotated-&<>-Zk3vN8qW") }, 0,
		same("password_updated_at", &passwordUpdated))
	newPassword.ConfigPlanChecks.PreApply = append([]plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}, newPassword.ConfigPlanChecks.PreApply...)

	// Bumping the version sends it: one verify login, with the new password.
	bump := step(roleConfig(600, 2), nil, 1, func(st *terraform.State) error {
		if got := st.RootModule().Resources[name].Primary.Attributes["password_updated_at"]; got == passwordUpdated {
			return fmt.Errorf("password_updated_at did not change")
		}
		if n := s.mk.Stats().FailedLogins; n != 0 {
			return fmt.Errorf("%d failed logins: the old password was sent", n)
		}
		return nil
	})

	imp := resource.TestStep{ResourceName: name, ImportState: true, ImportStateId: "metakraftwerk/ci", ImportStateVerify: true,
		ImportStateVerifyIgnore: []string{"password_wo_version"}}

	// Drift: the ttl changed and then the role deleted outside Terraform.
	drift := step(roleConfig(600, 2), func() { s.mustWrite("metakraftwerk/roles/ci", map[string]any{"ttl": 60}) }, 0,
		resource.TestCheckResourceAttr(name, "ttl", "600"))
	drift.ConfigPlanChecks.PreApply = append([]plancheck.PlanCheck{plancheck.ExpectResourceAction(name, plancheck.ResourceActionUpdate),
		plancheck.ExpectKnownValue(name, tfjsonpath.New("ttl"), knownvalue.Int64Exact(600))}, drift.ConfigPlanChecks.PreApply...)
	deleted := step(roleConfig(600, 2), func() {
		if _, err := s.vault.Logical().Delete("metakraftwerk/roles/ci"); err != nil {
			t.Error(err)
		}
	}, 1, resource.TestCheckResourceAttr(name, "password_set", "true"))
	deleted.ConfigPlanChecks.PreApply = append([]plancheck.PlanCheck{plancheck.ExpectResourceAction(name, plancheck.ResourceActionCreate)}, deleted.ConfigPlanChecks.PreApply...)

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers(),
		TerraformVersionChecks:   requireWriteOnly,
		Steps:                    []resource.TestStep{create, replan, ttl, newPassword, bump, imp, drift, deleted},
		CheckDestroy: func(*terraform.State) error {
			if role, err := s.vault.Logical().Read("metakraftwerk/roles/ci"); err != nil || role != nil {
				return fmt.Errorf("after destroy the role reads %v, %w", role, err)
			}
			return nil
		},
	})
}

// TestAccRoleWrongPassword: a wrong password fails the apply with the
// engine's 400 message, and nothing is stored.
func TestAccRoleWrongPassword(t *testing.T) {
	s := newAccStack(t)
	s.usePassword(accPassword) // the stand-in's
	s.passwords = append(s.passwords, "not-the-password-Qv7")
	t.Setenv("TF_VAR_password", "not-the-password-Qv7")
	stateChecks, _ := s.checks()
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers(),
		TerraformVersionChecks:   requireWriteOnly,
		Steps: []resource.TestStep{{
			Config:            roleConfig(0, 1),
			ExpectError:       regexp.MustCompile(`Code: 400[\s\S]*verify: MetaKraftwerk rejected the login for role "ci": Invalid login`),
			ConfigStateChecks: stateChecks,
		}},
		CheckDestroy: func(*terraform.State) error {
			if role, err := s.vault.Logical().Read("metakraftwerk/roles/ci"); err != nil || role != nil {
				return fmt.Errorf("the rejected role was stored: %v, %w", role, err)
			}
			return s.scanFiles()
		},
	})
}

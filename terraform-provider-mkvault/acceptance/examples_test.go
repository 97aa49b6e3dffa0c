//go:build acceptance

package acceptance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
)

// The examples' MetaKraftwerk users: the emails the examples write as
// literals, with passwords only the test knows.
var exampleUsers = []devserver.User{
	{ID: 41, Email: "team-a-ci@example.com", Password: "ex-A pw/&=1-9kQ", Projects: []string{"TEAM_A"}},
	{ID: 42, Email: "team-b-deploy@example.com", Password: "ex-B pw/&=2-4mZ", Projects: []string{"TEAM_B"}},
}

// exampleMount is not the default: the examples must work at any mount.
const exampleMount = "mk-prod"

// TestAccExampleComplete applies examples/complete as a new user does, on
// an engine just enabled at a non-default mount with nothing written to
// it: the first apply (the config before the roles, the creds opened only
// once their role exists, the token used by a provisioner), a re-plan
// that is empty, a plan with no password given that passes and is empty,
// a password rotation as docs/terraform.md says to make one, and destroy.
func TestAccExampleComplete(t *testing.T) {
	testExample(t, "complete", []string{"complete/main.tf"}, map[string]int64{
		// Two verify logins and one for the creds the provisioner uses.
		"first apply": 3,
		// The new password's verify, and the creds read anew for the
		// smoke test it triggers (the rotation retired the shared token).
		"rotation": 2,
	})
}

// TestAccExamplePieces applies the per-resource examples the provider's
// docs show, put together as one configuration, the same way.
func TestAccExamplePieces(t *testing.T) {
	testExample(t, "pieces", []string{
		"provider/provider.tf",
		"resources/mkvault_config/resource.tf",
		"resources/mkvault_role/resource.tf",
		"data-sources/mkvault_role/data-source.tf",
		"ephemeral-resources/mkvault_creds/ephemeral-resource.tf",
	}, map[string]int64{
		// The role's verify login and one for the creds.
		"first apply": 2,
		"rotation":    2,
	})
}

// testExample runs the user's order on the example files, copied into one
// directory as a user copies them.
func testExample(t *testing.T, name string, files []string, logins map[string]int64) {
	s := newAccStackWith(t, stackOptions{mount: exampleMount, empty: true, users: exampleUsers})
	// The examples name the provider by its registry address.
	t.Setenv("TF_ACC_PROVIDER_NAMESPACE", "metakraftwerk")
	stateChecks, planChecks := s.checks()

	first := exampleDir(t, name, files, nil)
	// The rotation as docs/terraform.md says: the new password given, and
	// team-a-ci's password_wo_version bumped in the same apply.
	rotated := exampleDir(t, name+"-rotated", files, func(text string) string {
		i := strings.Index(text, `name                = "team-a-ci"`)
		if i < 0 {
			return text
		}
		return text[:i] + strings.Replace(text[i:], "password_wo_version = 1", "password_wo_version = 2", 1)
	})
	vars := config.Variables{"mount": config.StringVariable(exampleMount), "base_url": config.StringVariable(s.mk.URL)}
	passwords := func(set bool) {
		for i, env := range []string{"TF_VAR_team_a_password", "TF_VAR_team_b_password"} {
			if set {
				os.Setenv(env, exampleUsers[i].Password)
			} else {
				os.Unsetenv(env)
			}
		}
	}
	t.Cleanup(func() { passwords(false) })
	step := func(what string, dir string, pre func(), planOnly bool, checks ...resource.TestCheckFunc) resource.TestStep {
		count, counted := s.expectLogins(logins[what])
		st := resource.TestStep{
			// At the step, not the case: the examples' own provider block
			// counts as the step's providers.
			ProtoV6ProviderFactories: providers(),
			PreConfig:                func() { pre(); count() },
			ConfigDirectory:          func(config.TestStepConfigRequest) string { return dir },
			ConfigVariables:          vars,
			PlanOnly:                 planOnly,
			Check:                    resource.ComposeAggregateTestCheckFunc(append(checks, counted)...),
			ConfigStateChecks:        stateChecks,
			ConfigPlanChecks:         planChecks,
		}
		if planOnly {
			// A plan-only step runs no Check: its plans are checked.
			st.ConfigPlanChecks = resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
				noSecrets{s: s}, plancheck.ExpectEmptyPlan(), checkFunc(func() error { return counted(nil) }),
			}}
		}
		return st
	}
	const role = "mkvault_role.team_a_ci"
	var passwordUpdated string
	newPassword := "ex-A rotated/&=3-7pW"

	resource.Test(t, resource.TestCase{
		TerraformVersionChecks: requireWriteOnly,
		CheckDestroy:           s.engineIsEmpty(exampleMount),
		Steps: append([]resource.TestStep{
			step("first apply", first, func() { passwords(true) }, false,
				resource.TestCheckResourceAttr("mkvault_config.this", "base_url", s.mk.URL),
				resource.TestCheckResourceAttr(role, "id", exampleMount+"/team-a-ci"),
				resource.TestCheckResourceAttr(role, "password_set", "true"),
				resource.TestCheckResourceAttrSet(role, "verified_at"),
				func(st *terraform.State) error {
					passwordUpdated = st.RootModule().Resources[role].Primary.Attributes["password_updated_at"]
					return nil
				}),
			step("re-plan", first, func() {}, true),
			step("plan without passwords", first, func() { passwords(false) }, true),
			step("rotation", rotated, func() { passwords(true); s.usePasswordOf(exampleUsers[0].Email, newPassword, "TF_VAR_team_a_password") }, false,
				func(st *terraform.State) error {
					if got := st.RootModule().Resources[role].Primary.Attributes["password_updated_at"]; got == passwordUpdated {
						return fmt.Errorf("password_updated_at is still %s after the rotation", got)
					}
					return nil
				}),
			step("re-plan after rotation", rotated, func() { passwords(false) }, true),
		}, importSteps(t, rotated, vars, files)...),
	})
}

// importSteps are the examples' import.sh commands, each as an import of
// the resource it names by the ID it gives, at this test's mount.
func importSteps(t *testing.T, dir string, vars config.Variables, files []string) []resource.TestStep {
	var steps []resource.TestStep
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join("..", "examples", filepath.Dir(f), "import.sh"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			args := strings.Fields(line)
			if len(args) != 4 || args[0] != "terraform" || args[1] != "import" {
				continue
			}
			id := exampleMount + strings.TrimPrefix(args[3], defaultMount)
			steps = append(steps, resource.TestStep{
				ProtoV6ProviderFactories: providers(),
				ConfigDirectory:          func(config.TestStepConfigRequest) string { return dir },
				ConfigVariables:          vars,
				ResourceName:             args[2],
				ImportState:              true,
				ImportStateId:            id,
				ImportStateVerify:        true,
				// Write-only and write-time settings are not read back.
				ImportStateVerifyIgnore: []string{"password_wo_version", "verify"},
			})
		}
	}
	if len(files) > 1 && len(steps) != 2 {
		t.Fatalf("found %d import commands in the examples' import.sh files, want 2", len(steps))
	}
	return steps
}

// checkFunc is a plan check made of a function.
type checkFunc func() error

func (f checkFunc) CheckPlan(_ context.Context, _ plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	resp.Error = f()
}

// exampleDir copies the example files into one directory, each edited by
// edit when given, and returns it.
func exampleDir(t *testing.T, name string, files []string, edit func(string) string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join("..", "examples", f))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if edit != nil {
			text = edit(text)
		}
		target := strings.ReplaceAll(strings.TrimSuffix(f, ".tf"), "/", "_") + ".tf"
		if err := os.WriteFile(filepath.Join(dir, target), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// usePasswordOf changes a user's password at the stand-in and in env, as
// an administrator and then the operator do.
func (s *accStack) usePasswordOf(email, pw, env string) {
	s.mu.Lock()
	s.passwords = append(s.passwords, pw)
	s.mu.Unlock()
	s.mk.SetPassword(email, pw)
	os.Setenv(env, pw)
}

// engineIsEmpty checks that destroy left the mount as enabling it did: no
// role, and the config at its defaults.
func (s *accStack) engineIsEmpty(mount string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		roles, err := s.vault.Logical().List(mount + "/roles")
		if err != nil {
			return err
		}
		if roles != nil && len(asStrings(roles.Data["keys"])) > 0 {
			return fmt.Errorf("roles left after destroy: %v", roles.Data["keys"])
		}
		cfg, err := s.vault.Logical().Read(mount + "/config")
		if err != nil {
			return err
		}
		if got := asString(cfg.Data["base_url"]); got == s.mk.URL {
			return fmt.Errorf("destroy left base_url %s", got)
		}
		return nil
	}
}

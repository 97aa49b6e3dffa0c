//go:build acceptance

package acceptance

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/hostile"
)

// TestAccHostileUpstream: with an upstream that echoes the password into
// a header line (and, listing projects, the token), the mkvault_role data
// source carries the engine's last_error into the state, and the ephemeral
// creds the engine's error into Terraform's output: neither holds any
// spelling of the password or the token (the stack's scans check state,
// plan, every file and the trace log).
func TestAccHostileUpstream(t *testing.T) {
	s := newAccStack(t)
	const password = "Pw-Hostile_7xQ/z=K&9"
	s.mu.Lock()
	s.passwords = append(s.passwords, password)
	s.mu.Unlock()
	for _, mode := range []hostile.Mode{hostile.HeaderLine, hostile.ProjectsEcho} {
		srv, err := hostile.Start(mode)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		role := "victim-" + string(mode)
		s.mustWrite("metakraftwerk/config", map[string]any{"base_url": srv.URL, "max_retries": 1, "request_timeout": "2s"})
		s.mustWrite("metakraftwerk/roles/"+role, map[string]any{"email": accEmail, "password": password, "projects": "CI_PROJECT", "verify": false})
		if mode == hostile.HeaderLine {
			if _, err := s.vault.Logical().Read("metakraftwerk/creds/" + role); err == nil {
				t.Fatal("creds succeeded against a hostile upstream")
			}
		} else if _, err := s.vault.Logical().Write("metakraftwerk/verify-role/"+role, nil); err == nil {
			t.Fatal("verify-role succeeded against a hostile upstream")
		}
		// last_error is a failed login's: projects-echo's login succeeds
		// and only its listing (verify-role's answer) breaks.
		want := map[hostile.Mode]string{hostile.HeaderLine: "was not valid HTTP", hostile.ProjectsEcho: ""}[mode]
		stateChecks, planChecks := s.checks()
		steps := []resource.TestStep{{
			Config:            fmt.Sprintf(`data "mkvault_role" "v" { name = %q }`, role),
			ConfigStateChecks: stateChecks, ConfigPlanChecks: planChecks,
			Check: func(st *terraform.State) error {
				for _, tok := range srv.Tokens() {
					s.mu.Lock()
					s.tokens = append(s.tokens, tok)
					s.mu.Unlock()
				}
				a := st.RootModule().Resources["data.mkvault_role.v"].Primary.Attributes
				if got := a["last_error"]; (want == "" && got != "") || !strings.Contains(got, want) {
					return fmt.Errorf("last_error %q, want %q", got, want)
				}
				if want == "" && a["last_login_at"] == "" {
					return fmt.Errorf("no last_login_at: the hostile login was not made")
				}
				return nil
			},
		}}
		if mode == hostile.HeaderLine {
			steps = append(steps, resource.TestStep{
				Config:      fmt.Sprintf("ephemeral \"mkvault_creds\" \"v\" {\n  role = %q\n}\n", role),
				ExpectError: regexp.MustCompile(`the\s+answer\s+from\s+127\.0\.0\.1:[0-9]+\s+was\s+not\s+valid\s+HTTP`),
			})
		}
		resource.Test(t, resource.TestCase{
			ProtoV6ProviderFactories: providers(),
			TerraformVersionChecks:   requireWriteOnly,
			Steps:                    steps,
		})
	}
}

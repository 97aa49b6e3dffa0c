//go:build acceptance

package acceptance

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
)

// TestAccRoleNoTakeover: applying a role over one made by hand fails with
// the import command and leaves the role as it was; imported, the same
// configuration applies as an update.
func TestAccRoleNoTakeover(t *testing.T) {
	s := newAccStack(t)
	// Made by hand, with settings the configuration does not have.
	s.mustWrite("metakraftwerk/roles/ci", map[string]any{"email": accEmail, "password": accPassword,
		"projects": "CI_PROJECT", "ttl": 120, "description": "made by hand"})
	stored := func() map[string]any {
		role, err := s.vault.Logical().Read("metakraftwerk/roles/ci")
		if err != nil || role == nil {
			t.Fatalf("read the hand-made role: %v %v", role, err)
		}
		out := map[string]any{}
		for _, f := range []string{"email", "projects", "ttl", "max_ttl", "description", "reuse_tokens", "reuse_min_remaining",
			"updated_at", "password_updated_at", "verified_at"} {
			out[f] = role.Data[f]
		}
		return out
	}
	before := stored()
	// Terraform's password is the stored one, so that nothing but the
	// provider's check keeps the engine from taking the write.
	logins := s.logins()
	stateChecks, planChecks := s.checks()
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers(),
		TerraformVersionChecks:   requireWriteOnly,
		Steps: []resource.TestStep{
			{Config: roleConfig(600, 1),
				ExpectError: regexp.MustCompile(`(?s)Already exists: import it to manage it.*role "ci" exists at mount\s+"metakraftwerk".*` +
					`terraform import mkvault_role\.NAME metakraftwerk/ci`)},
			{PreConfig: func() {
				if after := stored(); !reflect.DeepEqual(after, before) {
					t.Errorf("the refused apply changed the role:\nbefore %v\nafter  %v", before, after)
				}
				if got := s.logins() - logins; got != 0 {
					t.Errorf("the refused apply sent %d logins", got)
				}
			}, ResourceName: "mkvault_role.ci", ImportState: true, ImportStateId: "metakraftwerk/ci", ImportStatePersist: true,
				Config: roleConfig(600, 1)},
			// Imported, the configuration is an update of the settings it
			// differs in; the first password_wo_version sends no password.
			{Config: roleConfig(600, 1), ConfigStateChecks: stateChecks, ConfigPlanChecks: planChecks,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("mkvault_role.ci", "ttl", "600"),
					func(*terraform.State) error {
						after := stored()
						if after["password_updated_at"] != before["password_updated_at"] || after["description"] != "" {
							return fmt.Errorf("after import and apply: %v", after)
						}
						return nil
					})},
		},
	})
}

// TestAccConfigNoTakeover: creating the config over one written before
// fails with the import command and leaves it as it was; imported, it
// applies as an update, and its destroy says in the plan what it resets,
// then resets it.
func TestAccConfigNoTakeover(t *testing.T) {
	s := newAccStack(t) // writes base_url, as the README's set-up does
	s.mustWrite("metakraftwerk/config", map[string]any{"request_timeout": 25})
	read := func() map[string]any {
		cfg, err := s.vault.Logical().Read("metakraftwerk/config")
		if err != nil || cfg == nil {
			t.Fatalf("read the config: %v %v", cfg, err)
		}
		return cfg.Data
	}
	before := read()
	config := fmt.Sprintf(`
resource "mkvault_config" "this" {
  base_url        = %q
  request_timeout = 10
}
`, s.mk.URL)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers(),
		TerraformVersionChecks:   requireWriteOnly,
		Steps: []resource.TestStep{
			{Config: config, ExpectError: regexp.MustCompile(`(?s)Already exists: import it to manage it.*a config was written at\s+mount\s+"metakraftwerk".*` +
				`terraform import mkvault_config\.NAME metakraftwerk`)},
			{PreConfig: func() {
				if after := read(); !reflect.DeepEqual(after, before) {
					t.Errorf("the refused apply changed the config:\nbefore %v\nafter  %v", before, after)
				}
			}, ResourceName: "mkvault_config.this", ImportState: true, ImportStateId: "metakraftwerk", ImportStatePersist: true, Config: config},
			{Config: config, Check: resource.TestCheckResourceAttr("mkvault_config.this", "request_timeout", "10")},
		},
		CheckDestroy: func(*terraform.State) error {
			if cfg := read(); cfg["stored"] != false {
				return fmt.Errorf("after destroy the config reads %v; want the defaults", cfg)
			}
			// The destroy plan's warning, as the provider answered it (the
			// trace log holds the provider's diagnostics).
			log, err := os.ReadFile(s.logFile)
			if err != nil {
				return err
			}
			for _, want := range []string{"Destroying mkvault_config resets the engine's config to its defaults",
				`Destroy deletes metakraftwerk/config`, fmt.Sprintf(`base_url \"%s\"`, s.mk.URL), "request_timeout 10"} {
				if !strings.Contains(string(log), want) {
					return fmt.Errorf("the destroy plan's warning lacks %q", want)
				}
			}
			return nil
		},
	})
}

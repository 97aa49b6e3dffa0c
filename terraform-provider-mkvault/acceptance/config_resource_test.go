//go:build acceptance

package acceptance

import (
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
)

// TestAccConfig: the config as code, with import; destroy restores the
// engine's defaults, as `vault delete <mount>/config` does. The engine has
// no config written yet: one written before is refused (TestAccConfigNoTakeover).
func TestAccConfig(t *testing.T) {
	s := newAccStackWith(t, stackOptions{empty: true})
	stateChecks, planChecks := s.checks()
	config := func(timeout int) string {
		return fmt.Sprintf(`
resource "mkvault_config" "this" {
  base_url          = %q
  request_timeout   = %d
  max_retries       = 2
  max_upstream_time = 60
}
`, s.mk.URL, timeout)
	}
	const name = "mkvault_config.this"
	update := resource.TestStep{Config: config(20), Check: resource.TestCheckResourceAttr(name, "request_timeout", "20"),
		ConfigStateChecks: stateChecks, ConfigPlanChecks: planChecks}
	update.ConfigPlanChecks.PreApply = append([]plancheck.PlanCheck{plancheck.ExpectResourceAction(name, plancheck.ResourceActionUpdate)}, update.ConfigPlanChecks.PreApply...)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers(),
		TerraformVersionChecks:   requireWriteOnly,
		Steps: []resource.TestStep{
			{Config: config(10), ConfigStateChecks: stateChecks, ConfigPlanChecks: planChecks, Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr(name, "id", "metakraftwerk"),
				resource.TestCheckResourceAttr(name, "request_timeout", "10"),
				resource.TestCheckResourceAttr(name, "max_retries", "2"),
				// Left out: the engine's defaults.
				resource.TestCheckResourceAttr(name, "expiry_leeway", "60"),
				resource.TestCheckResourceAttr(name, "rejected_login_backoff", "300"),
				func(*terraform.State) error {
					cfg, err := s.vault.Logical().Read("metakraftwerk/config")
					if err != nil || fmt.Sprint(cfg.Data["request_timeout"]) != "10" {
						return fmt.Errorf("the engine's config: %v, %w", cfg, err)
					}
					return nil
				})},
			{ResourceName: name, ImportState: true, ImportStateId: "metakraftwerk", ImportStateVerify: true},
			update,
		},
		CheckDestroy: func(*terraform.State) error {
			cfg, err := s.vault.Logical().Read("metakraftwerk/config")
			if err != nil || fmt.Sprint(cfg.Data["request_timeout"]) != "30" || cfg.Data["base_url"] != "https://app.metakraftwerk.com" {
				return fmt.Errorf("after destroy the config reads %v, %w; want the defaults", cfg, err)
			}
			return nil
		},
	})
}

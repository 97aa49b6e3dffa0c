//go:build acceptance

package acceptance

import (
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/echoprovider"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
)

// TestAccCreds: the ephemeral creds, handed to the echo provider, are a
// token the stand-in accepts; no mkvault_creds is in plan or state, and the
// lease is revoked when the run ends.
func TestAccCreds(t *testing.T) {
	s := newAccStack(t)
	s.echo = true
	s.mustWrite("metakraftwerk/roles/ci", map[string]any{"email": accEmail, "password": accPassword})
	factories := providers()
	factories["echo"] = echoprovider.NewProviderServer()
	checks := noSecrets{s: s, allowTokensIn: "echo.test"}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: map[string]func() (tfprotov6.ProviderServer, error)(factories),
		TerraformVersionChecks:   requireWriteOnly,
		Steps: []resource.TestStep{{
			Config: `
ephemeral "mkvault_creds" "ci" {
  role = "ci"
}

provider "echo" {
  data = ephemeral.mkvault_creds.ci
}

resource "echo" "test" {}
`,
			ConfigStateChecks: []statecheck.StateCheck{checks},
			Check: func(st *terraform.State) error {
				for address := range st.RootModule().Resources {
					if address != "echo.test" {
						return fmt.Errorf("the state holds %s", address)
					}
				}
				a := st.RootModule().Resources["echo.test"].Primary.Attributes
				if !s.tokenAccepted(a["data.access_token"]) {
					return fmt.Errorf("the stand-in does not accept the ephemeral token")
				}
				if a["data.lease_id"] == "" || a["data.expires_at"] == "" || a["data.user_id"] != "7" {
					return fmt.Errorf("echo data %v", a)
				}
				// The run that opened it closed it: no lease is left.
				leases, err := s.vault.Logical().List("sys/leases/lookup/metakraftwerk/creds/ci")
				if err != nil || (leases != nil && len(leases.Data["keys"].([]any)) > 0) {
					return fmt.Errorf("leases left after the run: %v, %w", leases, err)
				}
				return nil
			},
		}},
	})
}

// Command terraform-provider-mkvault is a Terraform and OpenTofu provider
// for the MetaKraftwerk secrets engine of Vault or OpenBao: it keeps the
// engine's roles and config as code, with the role's password a write-only
// argument that never enters plan or state, and reads short-lived
// MetaKraftwerk tokens as an ephemeral resource.
package main

import (
	"context"
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/terraform-provider-mkvault/internal/provider"
)

// version is stamped by the release build (-ldflags -X main.version=X.Y.Z).
var version = "0.0.0-dev"

func main() {
	debug := flag.Bool("debug", false, "run the provider for a debugger (prints TF_REATTACH_PROVIDERS)")
	flag.Parse()
	err := providerserver.Serve(context.Background(), provider.New(version), providerserver.ServeOpts{
		Address:         provider.Address,
		Debug:           *debug,
		ProtocolVersion: 6,
	})
	if err != nil {
		log.Fatal(err)
	}
}

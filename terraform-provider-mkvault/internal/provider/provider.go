// Package provider is the mkvault Terraform provider: the MetaKraftwerk
// secrets engine's roles and config as resources, its roles as a data
// source, and its creds as an ephemeral resource. It speaks the engine's
// HTTP API through Vault's (or OpenBao's) client, never the engine's Go
// package.
package provider

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/vault/api"
)

// Address is the provider's source address in the registry protocol.
const Address = "registry.terraform.io/metakraftwerk/mkvault"

// defaultMount is where the engine is mounted unless a resource says
// otherwise.
const defaultMount = "metakraftwerk"

// New returns the provider's factory for the given version.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &mkvaultProvider{version: version} }
}

type mkvaultProvider struct{ version string }

var (
	_ provider.Provider                       = (*mkvaultProvider)(nil)
	_ provider.ProviderWithEphemeralResources = (*mkvaultProvider)(nil)
)

type providerModel struct {
	Address       types.String `tfsdk:"address"`
	Token         types.String `tfsdk:"token"`
	Namespace     types.String `tfsdk:"namespace"`
	CACertFile    types.String `tfsdk:"ca_cert_file"`
	SkipTLSVerify types.Bool   `tfsdk:"skip_tls_verify"`
}

func (p *mkvaultProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "mkvault"
	resp.Version = p.version
}

func (p *mkvaultProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "The MetaKraftwerk secrets engine of a Vault or OpenBao server. Each setting falls back to the " +
			"environment variable the Vault CLI reads (then OpenBao's BAO_ one).",
		Attributes: map[string]schema.Attribute{
			"address": schema.StringAttribute{
				Optional:    true,
				Description: "The server's address, e.g. https://vault.example.com:8200. Default: VAULT_ADDR, then BAO_ADDR, then https://127.0.0.1:8200.",
			},
			"token": schema.StringAttribute{
				Optional:    true,
				Sensitive:   true,
				Description: "The token to call the server with. Default: VAULT_TOKEN, then BAO_TOKEN, then the file ~/.vault-token that `vault login` writes.",
			},
			"namespace": schema.StringAttribute{
				Optional:    true,
				Description: "The namespace the engine is mounted in. Default: VAULT_NAMESPACE, then BAO_NAMESPACE.",
			},
			"ca_cert_file": schema.StringAttribute{
				Optional:    true,
				Description: "A PEM file of CA certificates to trust for the server. Default: VAULT_CACERT, then BAO_CACERT; else the system roots.",
			},
			"skip_tls_verify": schema.BoolAttribute{
				Optional:    true,
				Description: "Do not verify the server's TLS certificate (testing only). Default: VAULT_SKIP_VERIFY, then BAO_SKIP_VERIFY.",
			},
		},
	}
}

func (p *mkvaultProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var m providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	settings, err := settingsFrom(m, os.Getenv, os.UserHomeDir)
	if err != nil {
		resp.Diagnostics.AddError("Cannot configure the mkvault provider", err.Error())
		return
	}
	client, err := settings.client()
	if err != nil {
		resp.Diagnostics.AddError("Cannot configure the mkvault provider", err.Error())
		return
	}
	e := &engine{vault: client}
	resp.ResourceData, resp.DataSourceData, resp.EphemeralResourceData = e, e, e
}

func (p *mkvaultProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{newRoleResource, newConfigResource}
}

func (p *mkvaultProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{newRoleDataSource}
}

func (p *mkvaultProvider) EphemeralResources(context.Context) []func() ephemeral.EphemeralResource {
	return []func() ephemeral.EphemeralResource{newCredsEphemeralResource}
}

// settings are the provider's resolved connection settings.
type settings struct {
	address, token, namespace, caCertFile string
	skipTLSVerify                         bool
}

// settingsFrom resolves each setting: the configuration, else the Vault
// CLI's environment variable, else OpenBao's, else the default (for the
// token: ~/.vault-token).
func settingsFrom(m providerModel, getenv func(string) string, home func() (string, error)) (settings, error) {
	pick := func(attr types.String, envs ...string) string {
		if !attr.IsNull() && !attr.IsUnknown() && attr.ValueString() != "" {
			return attr.ValueString()
		}
		for _, e := range envs {
			if v := getenv(e); v != "" {
				return v
			}
		}
		return ""
	}
	s := settings{
		address:    pick(m.Address, "VAULT_ADDR", "BAO_ADDR"),
		token:      pick(m.Token, "VAULT_TOKEN", "BAO_TOKEN"),
		namespace:  pick(m.Namespace, "VAULT_NAMESPACE", "BAO_NAMESPACE"),
		caCertFile: pick(m.CACertFile, "VAULT_CACERT", "BAO_CACERT"),
	}
	if s.address == "" {
		s.address = "https://127.0.0.1:8200"
	}
	switch v := pick(types.StringNull(), "VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY"); {
	case !m.SkipTLSVerify.IsNull() && !m.SkipTLSVerify.IsUnknown():
		s.skipTLSVerify = m.SkipTLSVerify.ValueBool()
	case v != "":
		b, err := strconv.ParseBool(v)
		if err != nil {
			return s, fmt.Errorf("VAULT_SKIP_VERIFY (or BAO_SKIP_VERIFY) %q is not true or false", v)
		}
		s.skipTLSVerify = b
	}
	if s.token == "" {
		if dir, err := home(); err == nil {
			data, err := os.ReadFile(filepath.Join(dir, ".vault-token")) //nolint:gosec // G304: the file vault login writes, in the user's home
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return s, fmt.Errorf("reading ~/.vault-token: %w", err)
			}
			s.token = strings.TrimSpace(string(data))
		}
	}
	if s.token == "" {
		return s, errors.New("no token: set the provider's token, VAULT_TOKEN or BAO_TOKEN, or log in so that ~/.vault-token holds one")
	}
	return s, nil
}

// client builds the server's API client. It never retries on its own: a
// role write that verifies a login must not log in twice because a
// response was slow, and the engine's errors reach the user as they are.
func (s settings) client() (*api.Client, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	cfg.Address = s.address
	cfg.MaxRetries = 0
	if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: s.caCertFile, Insecure: s.skipTLSVerify}); err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	client.SetToken(s.token)
	if s.namespace != "" {
		client.SetNamespace(s.namespace)
	} else {
		client.ClearNamespace()
	}
	return client, nil
}

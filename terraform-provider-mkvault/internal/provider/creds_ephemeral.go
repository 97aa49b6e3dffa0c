package provider

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// leaseKey holds, in the ephemeral resource's private data, the lease to
// revoke when Terraform closes it.
const leaseKey = "lease_id"

// roleIDRe is mkvault_role's id: a mount, a slash, a role name.
var roleIDRe = regexp.MustCompile(`^.+/[^/]+$`)

type credsEphemeralResource struct{ engine *engine }

func newCredsEphemeralResource() ephemeral.EphemeralResource { return &credsEphemeralResource{} }

var (
	_ ephemeral.EphemeralResourceWithConfigure = (*credsEphemeralResource)(nil)
	_ ephemeral.EphemeralResourceWithClose     = (*credsEphemeralResource)(nil)
)

// credsModel is ephemeral.mkvault_creds: one creds read.
type credsModel struct {
	Mount         types.String `tfsdk:"mount"`
	Role          types.String `tfsdk:"role"`
	RoleID        types.String `tfsdk:"role_id"`
	AccessToken   types.String `tfsdk:"access_token"`
	ExpiresAt     types.String `tfsdk:"expires_at"`
	UserID        types.String `tfsdk:"user_id"`
	TokenID       types.String `tfsdk:"token_id"`
	LeaseID       types.String `tfsdk:"lease_id"`
	LeaseDuration types.Int64  `tfsdk:"lease_duration"`
}

func (e *credsEphemeralResource) Metadata(_ context.Context, req ephemeral.MetadataRequest, resp *ephemeral.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_creds"
}

func (e *credsEphemeralResource) Schema(_ context.Context, _ ephemeral.SchemaRequest, resp *ephemeral.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A MetaKraftwerk access token read from `<mount>/creds/<role>` for the length of one Terraform run. " +
			"It is never stored in plan or state; its lease is revoked when the run ends (the token itself lives to its exp).",
		Attributes: map[string]schema.Attribute{
			"role_id": schema.StringAttribute{Optional: true,
				Description: "The id of the mkvault_role to read a token for (`<mount>/<name>`), instead of mount and role. " +
					"Give it as `mkvault_role.<name>.id`: the id is unknown until the role exists, so Terraform opens these creds " +
					"only after the role is created, and the first apply works on an empty engine.",
				Validators: []validator.String{
					stringvalidator.ExactlyOneOf(path.MatchRoot("role"), path.MatchRoot("role_id")),
					stringvalidator.ConflictsWith(path.MatchRoot("mount")),
					stringvalidator.RegexMatches(roleIDRe, "must be <mount>/<name>, as mkvault_role's id is"),
				}},
			"mount": schema.StringAttribute{Optional: true, Computed: true, Description: "Where the engine is mounted; default metakraftwerk. Not with role_id."},
			"role": schema.StringAttribute{Optional: true, Validators: roleNameValidators(),
				Description: "The role to read a token for, by name. A role managed in the same configuration is better given as role_id."},
			"access_token":   schema.StringAttribute{Computed: true, Sensitive: true, Description: "The MetaKraftwerk JWT; send it as Authorization: Bearer."},
			"expires_at":     schema.StringAttribute{Computed: true, Description: "The token's expiry, RFC 3339."},
			"user_id":        schema.StringAttribute{Computed: true, Description: "The MetaKraftwerk user id of the login."},
			"token_id":       schema.StringAttribute{Computed: true, Description: "The token's jti."},
			"lease_id":       schema.StringAttribute{Computed: true, Description: "The Vault lease of this read."},
			"lease_duration": schema.Int64Attribute{Computed: true, Description: "The lease's length in seconds."},
		},
	}
}

func (e *credsEphemeralResource) Configure(_ context.Context, req ephemeral.ConfigureRequest, resp *ephemeral.ConfigureResponse) {
	e.engine = engineFrom(req.ProviderData, &resp.Diagnostics)
}

func (e *credsEphemeralResource) Open(ctx context.Context, req ephemeral.OpenRequest, resp *ephemeral.OpenResponse) {
	var m credsModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() || !ready(e.engine, &resp.Diagnostics) {
		return
	}
	role := m.Role.ValueString()
	if known(m.RoleID) {
		// role stays as configured (null): it is not computed.
		i := strings.LastIndex(m.RoleID.ValueString(), "/")
		m.Mount, role = types.StringValue(m.RoleID.ValueString()[:i]), m.RoleID.ValueString()[i+1:]
	}
	if m.Mount.IsNull() {
		m.Mount = types.StringValue(defaultMount)
	}
	p := enginePath(m.Mount.ValueString(), "creds/"+role)
	secret, err := e.engine.readSecret(ctx, p)
	switch {
	case err != nil:
		resp.Diagnostics.AddError("Cannot read creds", err.Error())
		return
	case secret == nil:
		resp.Diagnostics.AddError("Cannot read creds", p+" answered 404 and no error text")
		return
	}
	m.AccessToken = types.StringValue(asString(secret.Data["access_token"]))
	m.ExpiresAt = types.StringValue(asString(secret.Data["expires_at"]))
	m.UserID = types.StringValue(asString(secret.Data["user_id"]))
	m.TokenID = types.StringValue(asString(secret.Data["token_id"]))
	m.LeaseID = types.StringValue(secret.LeaseID)
	m.LeaseDuration = types.Int64Value(int64(secret.LeaseDuration))
	resp.Diagnostics.Append(resp.Result.Set(ctx, m)...)
	lease, _ := json.Marshal(secret.LeaseID)
	resp.Diagnostics.Append(resp.Private.SetKey(ctx, leaseKey, lease)...)
}

// Close revokes the lease: the run is over. Revoking contacts nothing at
// MetaKraftwerk, so it cannot fail there; a token without the right to
// revoke leaves the lease to expire, with a warning.
func (e *credsEphemeralResource) Close(ctx context.Context, req ephemeral.CloseRequest, resp *ephemeral.CloseResponse) {
	raw, diags := req.Private.GetKey(ctx, leaseKey)
	resp.Diagnostics.Append(diags...)
	var lease string
	if json.Unmarshal(raw, &lease) != nil || lease == "" || e.engine == nil {
		return
	}
	if err := e.engine.vault.Sys().RevokeWithContext(ctx, lease); err != nil {
		resp.Diagnostics.AddWarning("The creds lease was not revoked", err.Error())
	}
}

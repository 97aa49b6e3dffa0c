package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

type roleDataSource struct{ engine *engine }

func newRoleDataSource() datasource.DataSource { return &roleDataSource{} }

var _ datasource.DataSourceWithConfigure = (*roleDataSource)(nil)

// roleStatusModel is data.mkvault_role: a role's settings and what the
// engine knows of it now.
type roleStatusModel struct {
	Mount                types.String `tfsdk:"mount"`
	Name                 types.String `tfsdk:"name"`
	Email                types.String `tfsdk:"email"`
	Projects             types.List   `tfsdk:"projects"`
	TTL                  types.Int64  `tfsdk:"ttl"`
	MaxTTL               types.Int64  `tfsdk:"max_ttl"`
	Description          types.String `tfsdk:"description"`
	ReuseTokens          types.Bool   `tfsdk:"reuse_tokens"`
	ReuseMinRemaining    types.Int64  `tfsdk:"reuse_min_remaining"`
	MaxConcurrent        types.Int64  `tfsdk:"max_concurrent_logins"`
	PasswordSet          types.Bool   `tfsdk:"password_set"`
	UpdatedAt            types.String `tfsdk:"updated_at"`
	PasswordUpdatedAt    types.String `tfsdk:"password_updated_at"`
	VerifiedAt           types.String `tfsdk:"verified_at"`
	LastLoginAt          types.String `tfsdk:"last_login_at"`
	LastError            types.String `tfsdk:"last_error"`
	LastErrorAt          types.String `tfsdk:"last_error_at"`
	LoginRefusedUntil    types.String `tfsdk:"login_refused_until"`
	SharedTokenID        types.String `tfsdk:"shared_token_id"`
	SharedTokenExpiresAt types.String `tfsdk:"shared_token_expires_at"`
}

// roleStatusFields are the string fields of a role read beyond the
// settings, by name.
func (m *roleStatusModel) statusFields() map[string]*types.String {
	return map[string]*types.String{
		"updated_at": &m.UpdatedAt, "password_updated_at": &m.PasswordUpdatedAt, "verified_at": &m.VerifiedAt,
		"last_login_at": &m.LastLoginAt, "last_error": &m.LastError, "last_error_at": &m.LastErrorAt,
		"login_refused_until": &m.LoginRefusedUntil, "shared_token_id": &m.SharedTokenID,
		"shared_token_expires_at": &m.SharedTokenExpiresAt,
	}
}

func (d *roleDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_role"
}

func (d *roleDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	attrs := map[string]schema.Attribute{
		"mount":                 schema.StringAttribute{Optional: true, Computed: true, Description: "Where the engine is mounted; default metakraftwerk."},
		"name":                  schema.StringAttribute{Required: true, Validators: roleNameValidators(), Description: "The role's name."},
		"email":                 schema.StringAttribute{Computed: true},
		"projects":              schema.ListAttribute{ElementType: types.StringType, Computed: true},
		"ttl":                   schema.Int64Attribute{Computed: true, Description: "Seconds."},
		"max_ttl":               schema.Int64Attribute{Computed: true, Description: "Seconds."},
		"description":           schema.StringAttribute{Computed: true},
		"reuse_tokens":          schema.BoolAttribute{Computed: true},
		"reuse_min_remaining":   schema.Int64Attribute{Computed: true, Description: "Seconds."},
		"max_concurrent_logins": schema.Int64Attribute{Computed: true, Description: "At most this many logins of the role in flight at once."},
		"password_set":          schema.BoolAttribute{Computed: true},
	}
	for name := range (&roleStatusModel{}).statusFields() {
		attrs[name] = schema.StringAttribute{Computed: true, Description: "As `vault read <mount>/roles/<name>` shows it; RFC 3339 times, empty for none."}
	}
	resp.Schema = schema.Schema{
		Description: "A role of the MetaKraftwerk secrets engine, its settings and its status (the runtime fields come from the active node).",
		Attributes:  attrs,
	}
}

func (d *roleDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.engine = engineFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *roleDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m roleStatusModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() || !ready(d.engine, &resp.Diagnostics) {
		return
	}
	if m.Mount.IsNull() {
		m.Mount = types.StringValue(defaultMount)
	}
	data, err := d.engine.read(ctx, enginePath(m.Mount.ValueString(), "roles/"+m.Name.ValueString()))
	switch {
	case err != nil:
		resp.Diagnostics.AddError("Cannot read the role", err.Error())
		return
	case data == nil:
		resp.Diagnostics.AddError("No such role", fmt.Sprintf("%s has no role %q", m.Mount.ValueString(), m.Name.ValueString()))
		return
	}
	var role roleModel
	role.Mount, role.Name = m.Mount, m.Name
	role.fromEngine(ctx, data, &resp.Diagnostics)
	m.Email, m.Projects, m.TTL, m.MaxTTL = role.Email, role.Projects, role.TTL, role.MaxTTL
	m.Description, m.ReuseTokens, m.ReuseMinRemaining, m.PasswordSet = role.Description, role.ReuseTokens, role.ReuseMinRemaining, role.PasswordSet
	m.MaxConcurrent = role.MaxConcurrent
	for name, f := range m.statusFields() {
		*f = types.StringValue(asString(data[name]))
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}

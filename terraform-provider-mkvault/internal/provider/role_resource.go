package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/boolplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// importedKey marks, in a role's private state, a role that was imported:
// the first password_wo_version the configuration gives it is recorded
// without sending the password, so that adopting a role changes nothing.
const importedKey = "imported"

type roleResource struct{ engine *engine }

func newRoleResource() resource.Resource { return &roleResource{} }

var (
	_ resource.ResourceWithConfigure      = (*roleResource)(nil)
	_ resource.ResourceWithImportState    = (*roleResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*roleResource)(nil)
	_ resource.ResourceWithValidateConfig = (*roleResource)(nil)
)

// roleModel is mkvault_role.
type roleModel struct {
	ID                types.String `tfsdk:"id"`
	Mount             types.String `tfsdk:"mount"`
	Name              types.String `tfsdk:"name"`
	Email             types.String `tfsdk:"email"`
	PasswordWO        types.String `tfsdk:"password_wo"`
	PasswordWOVersion types.Int64  `tfsdk:"password_wo_version"`
	Projects          types.List   `tfsdk:"projects"`
	TTL               types.Int64  `tfsdk:"ttl"`
	MaxTTL            types.Int64  `tfsdk:"max_ttl"`
	Description       types.String `tfsdk:"description"`
	ReuseTokens       types.Bool   `tfsdk:"reuse_tokens"`
	ReuseMinRemaining types.Int64  `tfsdk:"reuse_min_remaining"`
	MaxConcurrent     types.Int64  `tfsdk:"max_concurrent_logins"`
	Verify            types.Bool   `tfsdk:"verify"`
	PasswordSet       types.Bool   `tfsdk:"password_set"`
	UpdatedAt         types.String `tfsdk:"updated_at"`
	PasswordUpdatedAt types.String `tfsdk:"password_updated_at"`
	VerifiedAt        types.String `tfsdk:"verified_at"`
}

func (r *roleResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_role"
}

func (r *roleResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	keep := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	resp.Schema = schema.Schema{
		Description: "A role of the MetaKraftwerk secrets engine: one MetaKraftwerk login whose tokens Vault hands out " +
			"at `<mount>/creds/<name>`. The password is write-only: it is sent to the engine when the role is created and " +
			"when password_wo_version changes, and is never stored in plan or state. Creating it refuses a role that exists " +
			"already, leaving it as it is: import it (`<mount>/<name>`) to manage it.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, PlanModifiers: keep,
				Description: "`<mount>/<name>`, the import ID."},
			"mount": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(defaultMount),
				PlanModifiers: replace, Description: "Where the engine is mounted."},
			"name": schema.StringAttribute{Required: true, PlanModifiers: replace, Validators: roleNameValidators(),
				Description: "The role's name: " + roleNameDescription + "."},
			"email": schema.StringAttribute{Required: true,
				Description: "The MetaKraftwerk user's login email."},
			"password_wo": schema.StringAttribute{Optional: true, Sensitive: true, WriteOnly: true,
				Description: "The MetaKraftwerk user's password. Write-only: sent on create and when password_wo_version changes, " +
					"never stored in plan or state. Changing only this value changes nothing: bump password_wo_version to send it."},
			"password_wo_version": schema.Int64Attribute{Optional: true,
				Validators:  []validator.Int64{int64validator.AtLeast(1)},
				Description: "Change it (and only it) to send password_wo again, e.g. after rotating the password in MetaKraftwerk."},
			"projects": schema.ListAttribute{ElementType: types.StringType, Optional: true, Computed: true,
				Default:     listdefault.StaticValue(types.ListValueMust(types.StringType, []attr.Value{})),
				Description: "MetaKraftwerk projects the login must be able to use (checked when the login is verified)."},
			"ttl": schema.Int64Attribute{Optional: true, Computed: true, Validators: seconds(), Default: int64default.StaticInt64(0),
				Description: "Cap on the lease, in seconds; 0: until the token's expiry less the config's expiry_leeway."},
			"max_ttl": schema.Int64Attribute{Optional: true, Computed: true, Validators: seconds(), Default: int64default.StaticInt64(0),
				Description: "Cap on the lease like ttl, in seconds."},
			"description": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(""),
				Description: "Free text."},
			"reuse_tokens": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(false),
				Description: "Hand the role's current token to further readers instead of logging in for every read."},
			"reuse_min_remaining": schema.Int64Attribute{Optional: true, Computed: true, Validators: seconds(), Default: int64default.StaticInt64(3600),
				Description: "With reuse_tokens, the least remaining life, in seconds, a token must have to be handed out again."},
			"max_concurrent_logins": schema.Int64Attribute{Optional: true, Computed: true, Default: int64default.StaticInt64(4),
				Validators: []validator.Int64{int64validator.Between(1, 64)},
				Description: "At most this many logins of the role in flight at once; further readers wait. " +
					"A password changed in MetaKraftwerk costs at most this many failed logins per rejected_login_backoff."},
			"verify": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(true),
				Description: "Log in once (and check projects) when the login changes. Sent on write, not read back."},
			"password_set": schema.BoolAttribute{Computed: true,
				PlanModifiers: []planmodifier.Bool{boolplanmodifier.UseStateForUnknown()},
				Description:   "Whether the engine holds a password for the role."},
			"updated_at": schema.StringAttribute{Computed: true, Description: "The role's last write, RFC 3339."},
			"password_updated_at": schema.StringAttribute{Computed: true,
				Description: "The last write that set the password, RFC 3339."},
			"verified_at": schema.StringAttribute{Computed: true,
				Description: "The last check of the stored login that passed, RFC 3339; empty when the login changed without one."},
		},
	}
}

func (r *roleResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.engine = engineFrom(req.ProviderData, &resp.Diagnostics)
}

// ValidateConfig refuses spellings the engine would normalise, which would
// otherwise show as a difference on every plan.
func (r *roleResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m roleModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if e := m.Email.ValueString(); !m.Email.IsUnknown() && e != strings.TrimSpace(e) {
		resp.Diagnostics.AddAttributeError(path.Root("email"), "Email has surrounding spaces", "the engine stores it trimmed")
	}
	if m.Projects.IsNull() || m.Projects.IsUnknown() {
		return
	}
	var projects []types.String
	resp.Diagnostics.Append(m.Projects.ElementsAs(ctx, &projects, false)...)
	seen := map[string]bool{}
	for _, p := range projects {
		if p.IsUnknown() {
			continue
		}
		name := p.ValueString()
		switch {
		case name == "" || name != strings.TrimSpace(name):
			resp.Diagnostics.AddAttributeError(path.Root("projects"), "Invalid project name",
				fmt.Sprintf("%q: project names must not be empty or have surrounding spaces", name))
		case seen[name]:
			resp.Diagnostics.AddAttributeError(path.Root("projects"), "Duplicate project", fmt.Sprintf("%q is listed twice", name))
		}
		seen[name] = true
	}
}

// ModifyPlan fails a plan that would have to send password_wo without one
// (a create or replacement, or a password_wo_version change), naming the role; anywhere
// else a null password is fine, so that a plan needs no secret. It also
// keeps the computed stamps that an update cannot change: a plan shows
// updated_at as unknown, and password_updated_at and verified_at only when
// the update sends the password or changes the login.
func (r *roleResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	var plan, state, config roleModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.Config.Get(ctx, &config)...)
	if !req.State.Raw.IsNull() {
		resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	}
	imported, diags := req.Private.GetKey(ctx, importedKey)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	// A new name or mount replaces the role: that creates one too.
	creates := req.State.Raw.IsNull() || !plan.Name.Equal(state.Name) || !plan.Mount.Equal(state.Mount)
	sends := creates || sendsPassword(plan, state, imported != nil)
	if sends && config.PasswordWO.IsNull() {
		noPassword(&resp.Diagnostics, plan, creates)
		return
	}
	if creates {
		return
	}
	if !sends {
		plan.PasswordUpdatedAt = state.PasswordUpdatedAt
	}
	if !sends && plan.Email.Equal(state.Email) && plan.Projects.Equal(state.Projects) {
		plan.VerifiedAt = state.VerifiedAt
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, plan)...)
}

// noPassword is the error of a plan or apply that must send password_wo
// and has none.
func noPassword(diags *diag.Diagnostics, plan roleModel, creates bool) {
	why := "password_wo_version changed, which sends password_wo"
	if creates {
		why = "creating it sends password_wo"
	}
	diags.AddAttributeError(path.Root("password_wo"), "No password to send",
		fmt.Sprintf("role %q: %s, but password_wo is null (is its variable set?)", plan.Name.ValueString(), why))
}

// sendsPassword reports whether an update from state to plan sends the
// password: when password_wo_version changes, except the first version an
// imported role is given.
func sendsPassword(plan, state roleModel, imported bool) bool {
	if plan.PasswordWOVersion.Equal(state.PasswordWOVersion) {
		return false
	}
	return !imported || !state.PasswordWOVersion.IsNull()
}

func (r *roleResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	if !ready(r.engine, &resp.Diagnostics) {
		return
	}
	var plan, config roleModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.Config.Get(ctx, &config)...)
	if resp.Diagnostics.HasError() {
		return
	}
	// The engine's write creates or overwrites alike (Vault picks create or
	// update by whether the role exists; a client cannot ask for create
	// only), so a role someone else made is looked for first. A role made
	// between this read and the write is still overwritten.
	existing, err := r.engine.read(ctx, rolePath(plan))
	if err != nil {
		resp.Diagnostics.AddError("Cannot create the role", err.Error())
		return
	}
	if existing != nil {
		exists(&resp.Diagnostics, "mkvault_role", fmt.Sprintf("role %q exists at mount %q", plan.Name.ValueString(), strings.Trim(plan.Mount.ValueString(), "/")),
			strings.Trim(plan.Mount.ValueString(), "/")+"/"+plan.Name.ValueString(),
			"To replace it instead, delete it first: vault delete "+rolePath(plan)+".")
		return
	}
	data := roleData(ctx, plan)
	if !config.PasswordWO.IsNull() {
		data["password"] = config.PasswordWO.ValueString()
	}
	if _, err := r.engine.write(ctx, rolePath(plan), data); err != nil {
		resp.Diagnostics.AddError("Cannot create the role", err.Error())
		return
	}
	r.refresh(ctx, &plan, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, plan)...)
}

func (r *roleResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	if !ready(r.engine, &resp.Diagnostics) {
		return
	}
	var state roleModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	data, err := r.engine.read(ctx, rolePath(state))
	switch {
	case err != nil:
		resp.Diagnostics.AddError("Cannot read the role", err.Error())
		return
	case data == nil:
		// Deleted outside Terraform: the next plan creates it again.
		resp.State.RemoveResource(ctx)
		return
	}
	state.fromEngine(ctx, data, &resp.Diagnostics)
	if state.Verify.IsNull() {
		state.Verify = types.BoolValue(true)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, state)...)
}

func (r *roleResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	if !ready(r.engine, &resp.Diagnostics) {
		return
	}
	var plan, state, config roleModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	resp.Diagnostics.Append(req.Config.Get(ctx, &config)...)
	imported, diags := req.Private.GetKey(ctx, importedKey)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	data := roleData(ctx, plan)
	if sendsPassword(plan, state, imported != nil) {
		if config.PasswordWO.IsNull() {
			noPassword(&resp.Diagnostics, plan, false)
			return
		}
		data["password"] = config.PasswordWO.ValueString()
	}
	resp.Diagnostics.Append(resp.Private.SetKey(ctx, importedKey, nil)...)
	// Only password_wo_version changed, on an imported role: nothing to send.
	onlyVersion := state
	onlyVersion.PasswordWOVersion = plan.PasswordWOVersion
	if _, sends := data["password"]; sends || !sameSettings(onlyVersion, plan) {
		if _, err := r.engine.write(ctx, rolePath(plan), data); err != nil {
			resp.Diagnostics.AddError("Cannot update the role", err.Error())
			return
		}
	}
	planned := plan
	r.refresh(ctx, &plan, &resp.Diagnostics)
	// What the plan already knew stays as planned, so that a stamp another
	// request changed meanwhile shows at the next refresh, not as an error.
	for _, f := range []struct{ planned, got *types.String }{
		{&planned.PasswordUpdatedAt, &plan.PasswordUpdatedAt}, {&planned.VerifiedAt, &plan.VerifiedAt},
	} {
		if !f.planned.IsUnknown() {
			*f.got = *f.planned
		}
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, plan)...)
}

func (r *roleResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	if !ready(r.engine, &resp.Diagnostics) {
		return
	}
	var state roleModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if err := r.engine.delete(ctx, rolePath(state)); err != nil {
		resp.Diagnostics.AddError("Cannot delete the role", err.Error())
	}
}

// ImportState takes "<mount>/<name>": the name is what follows the last
// slash, since a mount may hold slashes and a role name may not.
func (r *roleResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	i := strings.LastIndex(req.ID, "/")
	if i <= 0 || i == len(req.ID)-1 {
		resp.Diagnostics.AddError("Invalid import ID", fmt.Sprintf("%q: want <mount>/<name>, e.g. metakraftwerk/team-a-ci", req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("mount"), req.ID[:i])...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), req.ID[i+1:])...)
	resp.Diagnostics.Append(resp.Private.SetKey(ctx, importedKey, []byte("true"))...)
}

func rolePath(m roleModel) string {
	return enginePath(m.Mount.ValueString(), "roles/"+m.Name.ValueString())
}

// roleData is what a write sends, but for the password.
func roleData(ctx context.Context, m roleModel) map[string]any {
	var projects []string
	_ = m.Projects.ElementsAs(ctx, &projects, false)
	if projects == nil {
		projects = []string{}
	}
	return map[string]any{
		"email":                 m.Email.ValueString(),
		"projects":              projects,
		"ttl":                   m.TTL.ValueInt64(),
		"max_ttl":               m.MaxTTL.ValueInt64(),
		"description":           m.Description.ValueString(),
		"reuse_tokens":          m.ReuseTokens.ValueBool(),
		"reuse_min_remaining":   m.ReuseMinRemaining.ValueInt64(),
		"max_concurrent_logins": m.MaxConcurrent.ValueInt64(),
		"verify":                m.Verify.ValueBool(),
	}
}

// sameSettings reports whether a and b send the same settings.
func sameSettings(a, b roleModel) bool {
	return a.Email.Equal(b.Email) && a.Projects.Equal(b.Projects) && a.TTL.Equal(b.TTL) && a.MaxTTL.Equal(b.MaxTTL) &&
		a.Description.Equal(b.Description) && a.ReuseTokens.Equal(b.ReuseTokens) &&
		a.ReuseMinRemaining.Equal(b.ReuseMinRemaining) && a.MaxConcurrent.Equal(b.MaxConcurrent) && a.Verify.Equal(b.Verify)
}

// refresh reads the role back after a write into m.
func (r *roleResource) refresh(ctx context.Context, m *roleModel, diags *diag.Diagnostics) {
	m.ID = types.StringValue(m.Mount.ValueString() + "/" + m.Name.ValueString())
	m.PasswordWO = types.StringNull()
	data, err := r.engine.read(ctx, rolePath(*m))
	if err != nil || data == nil {
		diags.AddError("Cannot read the role back", fmt.Sprintf("after the write: %v", err))
		return
	}
	m.fromEngine(ctx, data, diags)
}

// fromEngine sets the attributes a read of roles/<name> answers.
func (m *roleModel) fromEngine(ctx context.Context, data map[string]any, diags *diag.Diagnostics) {
	m.ID = types.StringValue(m.Mount.ValueString() + "/" + m.Name.ValueString())
	m.Email = types.StringValue(asString(data["email"]))
	projects, d := types.ListValueFrom(ctx, types.StringType, asStrings(data["projects"]))
	diags.Append(d...)
	m.Projects = projects
	m.TTL = types.Int64Value(asInt64(data["ttl"]))
	m.MaxTTL = types.Int64Value(asInt64(data["max_ttl"]))
	m.Description = types.StringValue(asString(data["description"]))
	m.ReuseTokens = types.BoolValue(asBool(data["reuse_tokens"]))
	m.ReuseMinRemaining = types.Int64Value(asInt64(data["reuse_min_remaining"]))
	m.MaxConcurrent = types.Int64Value(asInt64(data["max_concurrent_logins"]))
	m.PasswordSet = types.BoolValue(asBool(data["password_set"]))
	m.UpdatedAt = types.StringValue(asString(data["updated_at"]))
	m.PasswordUpdatedAt = types.StringValue(asString(data["password_updated_at"]))
	m.VerifiedAt = types.StringValue(asString(data["verified_at"]))
}

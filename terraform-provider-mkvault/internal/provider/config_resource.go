package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

type configResource struct{ engine *engine }

func newConfigResource() resource.Resource { return &configResource{} }

var (
	_ resource.ResourceWithConfigure   = (*configResource)(nil)
	_ resource.ResourceWithImportState = (*configResource)(nil)
	_ resource.ResourceWithModifyPlan  = (*configResource)(nil)
)

// configModel is mkvault_config: the engine's <mount>/config.
type configModel struct {
	ID                   types.String `tfsdk:"id"`
	Mount                types.String `tfsdk:"mount"`
	BaseURL              types.String `tfsdk:"base_url"`
	CACert               types.String `tfsdk:"ca_cert"`
	RequestTimeout       types.Int64  `tfsdk:"request_timeout"`
	MaxRetries           types.Int64  `tfsdk:"max_retries"`
	ExpiryLeeway         types.Int64  `tfsdk:"expiry_leeway"`
	RejectedLoginBackoff types.Int64  `tfsdk:"rejected_login_backoff"`
	MaxUpstreamTime      types.Int64  `tfsdk:"max_upstream_time"`
}

// configInts are the config's whole-second and count fields, by name.
func (m *configModel) configInts() map[string]*types.Int64 {
	return map[string]*types.Int64{
		"request_timeout": &m.RequestTimeout, "max_retries": &m.MaxRetries, "expiry_leeway": &m.ExpiryLeeway,
		"rejected_login_backoff": &m.RejectedLoginBackoff, "max_upstream_time": &m.MaxUpstreamTime,
	}
}

func (r *configResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_config"
}

func (r *configResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	keepInt := []planmodifier.Int64{int64planmodifier.UseStateForUnknown()}
	keepString := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	whole := func(desc string) schema.Int64Attribute {
		return schema.Int64Attribute{Optional: true, Computed: true, PlanModifiers: keepInt, Validators: seconds(), Description: desc}
	}
	resp.Schema = schema.Schema{
		Description: "How the MetaKraftwerk secrets engine reaches MetaKraftwerk (`<mount>/config`). Attributes left out " +
			"keep the engine's value (its default until set). Destroying it restores the engine's defaults, as " +
			"`vault delete <mount>/config` does, and its destroy plan says so in a warning. Creating it refuses a config " +
			"written before (the engine's read says `stored`), leaving it as it is: import it (by its mount) to manage it.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, PlanModifiers: keepString, Description: "The mount, the import ID."},
			"mount": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(defaultMount),
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}, Description: "Where the engine is mounted."},
			"base_url": schema.StringAttribute{Optional: true, Computed: true, PlanModifiers: keepString,
				Description: "MetaKraftwerk's host root, https unless loopback."},
			"ca_cert": schema.StringAttribute{Optional: true, Computed: true, PlanModifiers: keepString,
				Description: "PEM bundle of CA certificates to trust for MetaKraftwerk instead of the system roots."},
			"request_timeout":        whole("Timeout of one upstream attempt, in seconds."),
			"max_retries":            whole("Retries of transient upstream failures."),
			"expiry_leeway":          whole("How long before the token's exp its lease ends, in seconds."),
			"rejected_login_backoff": whole("How long a rejected login is remembered, in seconds; 0 turns it off. A change applies to the rejections remembered already (0 forgets them)."),
			"max_upstream_time":      whole("The longest one request waits for MetaKraftwerk in all, in seconds."),
		},
	}
}

func (r *configResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.engine = engineFrom(req.ProviderData, &resp.Diagnostics)
}

// Create refuses a config written before (by hand, by the README's set-up,
// by another state): destroy would reset it, so it is Terraform's only
// when imported. As for roles, a config written between this read and the
// write is still overwritten.
func (r *configResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan configModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() || !ready(r.engine, &resp.Diagnostics) {
		return
	}
	mount := strings.Trim(plan.Mount.ValueString(), "/")
	data, err := r.engine.read(ctx, enginePath(mount, "config"))
	if err != nil || data == nil {
		resp.Diagnostics.AddError("Cannot read the config", errText(err, "the engine answered nothing"))
		return
	}
	switch stored, ok := data["stored"].(bool); {
	case !ok:
		resp.Diagnostics.AddWarning("Cannot tell whether the config was written before",
			fmt.Sprintf("the engine at %q does not say (it is older than this provider); its config is written over", mount))
	case stored:
		exists(&resp.Diagnostics, "mkvault_config", fmt.Sprintf("a config was written at mount %q", mount), mount,
			"To start from the engine's defaults instead, delete it first: vault delete "+mount+"/config.")
		return
	}
	r.write(ctx, &plan, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, plan)...)
}

// ModifyPlan says, in the plan, what destroying the config resets, since
// destroy deletes <mount>/config rather than leave it as it was.
func (r *configResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if !req.Plan.Raw.IsNull() || req.State.Raw.IsNull() {
		return
	}
	var state configModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.AddWarning("Destroying mkvault_config resets the engine's config to its defaults", destroyResets(state))
}

// destroyResets says what deleting the config in state changes.
func destroyResets(m configModel) string {
	mount := strings.Trim(m.Mount.ValueString(), "/")
	now := []string{fmt.Sprintf("base_url %q", m.BaseURL.ValueString())}
	if m.CACert.ValueString() != "" {
		now = append(now, "ca_cert (set)")
	}
	for _, name := range []string{"request_timeout", "max_retries", "expiry_leeway", "rejected_login_backoff", "max_upstream_time"} {
		now = append(now, fmt.Sprintf("%s %d", name, m.configInts()[name].ValueInt64()))
	}
	return fmt.Sprintf("Destroy deletes %s/config, as `vault delete %s/config` does: every setting goes back to the engine's "+
		"default, base_url included. Set now: %s. "+
		"To stop managing the config and keep it, remove it from the state instead (terraform state rm, or a removed block).",
		mount, mount, strings.Join(now, ", "))
}

func (r *configResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan configModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	r.write(ctx, &plan, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, plan)...)
}

// write sends the known attributes of plan (a partial update: the engine
// keeps the others) and reads the config back into it.
func (r *configResource) write(ctx context.Context, plan *configModel, diags *diag.Diagnostics) {
	if diags.HasError() || !ready(r.engine, diags) {
		return
	}
	data := map[string]any{}
	if known(plan.BaseURL) {
		data["base_url"] = plan.BaseURL.ValueString()
	}
	if known(plan.CACert) {
		data["ca_cert"] = plan.CACert.ValueString()
	}
	for name, v := range plan.configInts() {
		if !v.IsNull() && !v.IsUnknown() {
			data[name] = v.ValueInt64()
		}
	}
	if _, err := r.engine.write(ctx, enginePath(plan.Mount.ValueString(), "config"), data); err != nil {
		diags.AddError("Cannot write the config", err.Error())
		return
	}
	r.refresh(ctx, plan, diags)
}

func known(s types.String) bool { return !s.IsNull() && !s.IsUnknown() }

func (r *configResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state configModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || !ready(r.engine, &resp.Diagnostics) {
		return
	}
	r.refresh(ctx, &state, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, state)...)
}

// refresh reads the config in force into m. A value the engine stores in
// its own spelling (a PEM bundle without its final newline, a base_url
// without a trailing slash) keeps the spelling m has, so that it shows no
// difference.
func (r *configResource) refresh(ctx context.Context, m *configModel, diags *diag.Diagnostics) {
	data, err := r.engine.read(ctx, enginePath(m.Mount.ValueString(), "config"))
	if err != nil || data == nil {
		diags.AddError("Cannot read the config", errText(err, "the engine answered nothing"))
		return
	}
	m.ID = m.Mount
	sameAs := func(prior types.String, engine string, normalise func(string) string) types.String {
		if known(prior) && normalise(prior.ValueString()) == normalise(engine) {
			return prior
		}
		return types.StringValue(engine)
	}
	m.BaseURL = sameAs(m.BaseURL, asString(data["base_url"]), func(s string) string {
		return strings.ToLower(strings.TrimRight(strings.TrimSpace(s), "/"))
	})
	m.CACert = sameAs(m.CACert, asString(data["ca_cert"]), strings.TrimSpace)
	for name, v := range m.configInts() {
		*v = types.Int64Value(asInt64(data[name]))
	}
}

func (r *configResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state configModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || !ready(r.engine, &resp.Diagnostics) {
		return
	}
	if err := r.engine.delete(ctx, enginePath(state.Mount.ValueString(), "config")); err != nil {
		resp.Diagnostics.AddError("Cannot reset the config", err.Error())
	}
}

// ImportState takes the mount.
func (r *configResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	mount := strings.Trim(req.ID, "/")
	if mount == "" {
		resp.Diagnostics.AddError("Invalid import ID", "want the mount, e.g. metakraftwerk")
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("mount"), mount)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), mount)...)
}

func errText(err error, otherwise string) string {
	if err != nil {
		return err.Error()
	}
	return otherwise
}

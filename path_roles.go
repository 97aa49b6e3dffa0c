package metakraftwerk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

const (
	roleStoragePrefix = "roles/"

	defaultReuseMinRemaining = time.Hour
	maxPasswordLen           = 1024
	maxEmailLen              = 254
	maxDescriptionLen        = 1024
	maxProjects              = 100
	maxProjectNameLen        = 256

	// defaultMaxConcurrentLogins is chosen in docs/performance.md
	// ("Concurrent logins of one role"): it keeps what a password changed
	// upstream costs below the common lockout threshold of five failed
	// logins, and still lets one role serve fresh reads in parallel.
	defaultMaxConcurrentLogins = 4
	// maxMaxConcurrentLogins is the client's idle connections per host:
	// beyond it, parallel logins would open and close connections.
	maxMaxConcurrentLogins = 64
	// maxListPage bounds the roles of one detailed LIST page.
	maxListPage = 1000
)

// roleEntry is a stored role. Password never leaves storage except in the
// login request to MetaKraftwerk.
type roleEntry struct {
	Email             string        `json:"email"`
	Password          string        `json:"password"`
	TTL               time.Duration `json:"ttl,omitempty"`
	MaxTTL            time.Duration `json:"max_ttl,omitempty"`
	Description       string        `json:"description,omitempty"`
	Projects          []string      `json:"projects,omitempty"`
	ReuseTokens       bool          `json:"reuse_tokens,omitempty"`
	ReuseMinRemaining time.Duration `json:"reuse_min_remaining"`
	// MaxConcurrentLogins bounds the role's logins in flight at once
	// (loginLimit); 0, as roles stored before it existed have, is the
	// default.
	MaxConcurrentLogins int `json:"max_concurrent_logins,omitempty"`

	// UpdatedAt is the last write, PasswordUpdatedAt the last write that set
	// the password, VerifiedAt the last verify of the stored login that
	// passed (cleared when a write changes the login without verifying).
	UpdatedAt         time.Time `json:"updated_at,omitzero"`
	PasswordUpdatedAt time.Time `json:"password_updated_at,omitzero"`
	VerifiedAt        time.Time `json:"verified_at,omitzero"`
}

// loginLimit is the most logins of the role's stored login in flight at
// once on this node.
func (r *roleEntry) loginLimit() int {
	if r.MaxConcurrentLogins <= 0 {
		return defaultMaxConcurrentLogins
	}
	return r.MaxConcurrentLogins
}

func (r *roleEntry) toResponseData() map[string]any {
	projects := r.Projects
	if projects == nil {
		projects = []string{}
	}
	return map[string]any{
		fieldEmail:               r.Email,
		fieldPasswordSet:         r.Password != "",
		fieldTTL:                 int64(r.TTL / time.Second),
		fieldMaxTTL:              int64(r.MaxTTL / time.Second),
		fieldDescription:         r.Description,
		fieldProjects:            projects,
		fieldReuseTokens:         r.ReuseTokens,
		fieldReuseMinRemaining:   int64(r.ReuseMinRemaining / time.Second),
		fieldMaxConcurrentLogins: r.loginLimit(),
		fieldUpdatedAt:           formatTime(r.UpdatedAt),
		fieldPasswordUpdatedAt:   formatTime(r.PasswordUpdatedAt),
		fieldVerifiedAt:          formatTime(r.VerifiedAt),
	}
}

// addStatus adds what the engine knows of the role at runtime: never a
// password or a token, only when and why.
func addStatus(data map[string]any, state roleState, rejection *loginRejection, now time.Time) {
	data[fieldLastLoginAt] = formatTime(state.lastLogin)
	lastError, lastErrorAt := state.lastError, state.lastErrorAt
	var refusedUntil time.Time
	if rejection != nil {
		refusedUntil = rejection.until
		// The memory outlives the status (role writes that keep the login,
		// config writes, a reload): the refusal always comes with its cause.
		if !lastErrorAt.After(rejection.at) {
			lastError, lastErrorAt = rejection.err.Error(), rejection.at
		}
	}
	data[fieldLastError] = lastError
	data[fieldLastErrorAt] = formatTime(lastErrorAt)
	data[fieldLoginRefusedUntil] = formatTime(refusedUntil)
	var sharedID string
	var sharedExpires time.Time
	if tok := state.token; tok != nil && now.Before(tok.ExpiresAt) {
		sharedID, sharedExpires = tok.TokenID, tok.ExpiresAt
	}
	data[fieldSharedTokenID] = sharedID
	data[fieldSharedTokenExpiresAt] = formatTime(sharedExpires)
}

// formatTime is RFC 3339 in UTC, or "" for the zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// getRole returns the stored role, or (nil, nil) when it does not exist.
func getRole(ctx context.Context, s logical.Storage, name string) (*roleEntry, error) {
	entry, err := s.Get(ctx, roleStoragePrefix+name)
	if err != nil {
		return nil, fmt.Errorf("reading role %q: %w", name, err)
	}
	if entry == nil {
		return nil, nil
	}
	role := &roleEntry{ReuseMinRemaining: defaultReuseMinRemaining}
	if err := entry.DecodeJSON(role); err != nil {
		// encoding/json's text may quote a byte of the stored entry, whose
		// password is in it.
		return nil, fmt.Errorf("decoding role %q failed: the stored entry is not one this engine wrote", name)
	}
	return role, nil
}

func putRole(ctx context.Context, s logical.Storage, name string, role *roleEntry) error {
	entry, err := logical.StorageEntryJSON(roleStoragePrefix+name, role)
	if err != nil {
		return fmt.Errorf("encoding role %q: %w", name, err)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing role %q: %w", name, err)
	}
	return nil
}

func pathRoles(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "roles/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "roles",
			},
			Fields: map[string]*framework.FieldSchema{
				fieldAfter: {
					Type:        framework.TypeString,
					Query:       true,
					Description: "List the roles whose names sort after this one: the last name of the previous page.",
				},
				fieldLimit: {
					Type:  framework.TypeInt,
					Query: true,
					Description: fmt.Sprintf("Answer a page of at most this many roles (1 to %d), each with key_info: email, reuse_tokens, "+
						"project_count and the first %d characters of description (what list -detailed shows).",
						maxListPage, maxListedDescription),
				},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback:     b.pathRolesList,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list"},
				},
			},
			HelpSynopsis:    pathRolesListHelpSyn,
			HelpDescription: pathRolesListHelpDesc,
		},
		{
			Pattern: "roles/" + namePattern,
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "role",
			},
			Fields: map[string]*framework.FieldSchema{
				fieldName: roleNameField,
				fieldEmail: {
					Type:        framework.TypeString,
					Description: fmt.Sprintf("The MetaKraftwerk user's login, a plain address (ci@example.com) of at most %d characters. Required on create.", maxEmailLen),
				},
				fieldPassword: {
					Type: framework.TypeString,
					Description: fmt.Sprintf("At most %d bytes. Required on create. Write-only: never returned or logged. On the CLI, password=- "+
						"reads it from stdin and password=@file from a file, which keeps it off command lines.", maxPasswordLen),
					DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
				},
				fieldTTL: {
					Type:        framework.TypeDurationSecond,
					Description: "Caps the lease; 0 means until the token's exp less expiry_leeway.",
				},
				fieldMaxTTL: {
					Type: framework.TypeDurationSecond,
					Description: "Caps the lease exactly as ttl does; the lease is not renewable, so it adds nothing beyond ttl " +
						"and is kept for scripts that set it. ttl must not exceed it when both are set.",
				},
				fieldDescription: {
					Type:        framework.TypeString,
					Description: fmt.Sprintf("Free text, at most %d bytes.", maxDescriptionLen),
				},
				fieldProjects: {
					Type: framework.TypeCommaStringSlice,
					Description: fmt.Sprintf("MetaKraftwerk project names (at most %d, each at most %d bytes; comma-separated on the CLI) the login "+
						"must be able to use, checked when verify is true with GET /api/v1/projects, following every page of a "+
						"paginated answer, up to %d projects and %d MiB of listing; a project that is not visible, deleted or "+
						"disabled fails the check.", maxProjects, maxProjectNameLen, mkclient.MaxProjects, mkclient.MaxListingBytes>>20),
				},
				fieldVerify: {
					Type:        framework.TypeBool,
					Description: "Log in once (and check projects) before storing a written or changed login; false stores without contacting MetaKraftwerk. Not stored.",
					Default:     true,
				},
				fieldReuseTokens: {
					Type:        framework.TypeBool,
					Description: "Hand the role's current token to further readers instead of logging in for every read; concurrent reads share one login.",
					Default:     false,
				},
				fieldReuseMinRemaining: {
					Type: framework.TypeDurationSecond,
					Description: fmt.Sprintf("With reuse_tokens, the least life a token must have left to be handed out again; less than the %s token "+
						"lifetime. The floor in force is the larger of this and expiry_leeway + 1s.", formatDuration(documentedTokenLifetime)),
					Default: int(defaultReuseMinRemaining / time.Second),
				},
				fieldMaxConcurrentLogins: {
					Type: framework.TypeInt,
					Description: fmt.Sprintf("At most this many logins of the role in flight at once on the active node, 1 to %d; further "+
						"readers wait for one to end, within max_upstream_time, and once a login is rejected none of them logs in. "+
						"So a password changed in MetaKraftwerk costs at most this many failed logins per rejected_login_backoff.",
						maxMaxConcurrentLogins),
					Default: defaultMaxConcurrentLogins,
				},
			},
			ExistenceCheck: b.pathRoleExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				// The runtime status lives on the active node.
				logical.ReadOperation: &framework.PathOperation{
					Callback:     b.pathRoleRead,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
					Responses: map[int][]framework.Response{
						200: {{Description: "OK", Fields: roleResponseFields}},
					},
					ForwardPerformanceStandby: true,
				},
				// Writes verify with a login before storing; forwarded from
				// standbys up front, so that the login happens once.
				logical.CreateOperation: &framework.PathOperation{
					Callback:                  b.pathRoleWrite,
					DisplayAttrs:              &framework.DisplayAttributes{OperationVerb: "write"},
					ForwardPerformanceStandby: true,
				},
				logical.UpdateOperation: &framework.PathOperation{
					Callback:                  b.pathRoleWrite,
					DisplayAttrs:              &framework.DisplayAttributes{OperationVerb: "write"},
					ForwardPerformanceStandby: true,
				},
				logical.DeleteOperation: &framework.PathOperation{
					Callback:     b.pathRoleDelete,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "delete"},
				},
			},
			HelpSynopsis:    pathRolesHelpSyn,
			HelpDescription: pathRolesHelpDesc,
		},
	}
}

var roleResponseFields = map[string]*framework.FieldSchema{
	fieldEmail:               {Type: framework.TypeString, Required: true},
	fieldPasswordSet:         {Type: framework.TypeBool, Required: true},
	fieldTTL:                 {Type: framework.TypeDurationSecond, Required: true},
	fieldMaxTTL:              {Type: framework.TypeDurationSecond, Required: true},
	fieldDescription:         {Type: framework.TypeString, Required: true},
	fieldProjects:            {Type: framework.TypeCommaStringSlice, Required: true},
	fieldReuseTokens:         {Type: framework.TypeBool, Required: true},
	fieldReuseMinRemaining:   {Type: framework.TypeDurationSecond, Required: true},
	fieldMaxConcurrentLogins: {Type: framework.TypeInt, Required: true},

	fieldUpdatedAt:         {Type: framework.TypeString, Required: true, Description: "Last write of the role, RFC 3339 UTC."},
	fieldPasswordUpdatedAt: {Type: framework.TypeString, Required: true, Description: "Last write that set the password, RFC 3339 UTC."},
	fieldVerifiedAt:        {Type: framework.TypeString, Required: true, Description: "Last verify of the stored login that passed (role write or verify-role); empty when the login changed without one."},

	fieldLastLoginAt:          {Type: framework.TypeString, Required: true, Description: "Last successful login since the plugin started or the role was written; empty if none."},
	fieldLastError:            {Type: framework.TypeString, Required: true, Description: "The error of the last failed login, as its reader got it."},
	fieldLastErrorAt:          {Type: framework.TypeString, Required: true, Description: "When the last login failed."},
	fieldLoginRefusedUntil:    {Type: framework.TypeString, Required: true, Description: "While a rejected login is remembered: until when creds reads are refused without a new attempt."},
	fieldSharedTokenID:        {Type: framework.TypeString, Required: true, Description: "With reuse_tokens, the jti of the token being shared."},
	fieldSharedTokenExpiresAt: {Type: framework.TypeString, Required: true, Description: "With reuse_tokens, when the shared token expires."},
}

// roleListInfo is what a page of LIST shows of each role (list -detailed
// with a limit): small fields only, so that a page costs a bounded amount
// per role however large the roles are.
func roleListInfo(r *roleEntry) map[string]any {
	return map[string]any{
		fieldEmail:        r.Email,
		fieldReuseTokens:  r.ReuseTokens,
		fieldProjectCount: len(r.Projects),
		fieldDescription:  truncate(r.Description, maxListedDescription),
	}
}

// maxListedDescription is how much of a description LIST shows, in runes.
const maxListedDescription = 100

// truncate cuts s to at most n runes, marking a cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

func (b *backend) pathRolesList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	after := d.Get(fieldAfter).(string)
	limit := d.Get(fieldLimit).(int)
	if limit < 0 || limit > maxListPage {
		return logical.ErrorResponse(fmt.Sprintf("%s: must be between 1 and %d (0 or none lists every role, with details up to %d), got %d", fieldLimit, maxListPage, maxListPage, limit)), nil
	}
	names, err := req.Storage.List(ctx, roleStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing roles: %w", err)
	}
	// Storage lists in order on every backend known; paging relies on it.
	if !slices.IsSorted(names) {
		slices.Sort(names)
	}
	if after != "" {
		i, found := slices.BinarySearch(names, after)
		if found {
			i++
		}
		names = names[i:]
	}
	// A plain LIST of a mount of up to one page answers as its first page,
	// so that vault list -detailed (whose CLI sends no limit) shows the
	// roles; past that it answers the keys alone: whatever else it held per
	// role would grow the plugin with the mount.
	if limit == 0 {
		if len(names) > maxListPage {
			resp := logical.ListResponse(names)
			resp.AddWarning(fmt.Sprintf("more than %d roles: key_info (list -detailed) comes a page at a time, with %s and %s", maxListPage, fieldLimit, fieldAfter))
			return resp, nil
		}
		limit = maxListPage
	}
	names = names[:min(limit, len(names))]
	roles, err := b.pageRoles(ctx, req.Storage, names)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(names))
	info := make(map[string]any, len(names))
	for i, name := range names {
		if roles[i] == nil { // deleted since the list
			continue
		}
		keys = append(keys, name)
		info[name] = roleListInfo(roles[i])
	}
	return logical.ListResponseWithInfo(keys, info), nil
}

// pageRoles reads the roles of one LIST page, nil for one deleted since;
// what a creds read cached needs no storage read. (Eight reads in flight
// were no faster than one on a 2-core server.)
func (b *backend) pageRoles(ctx context.Context, s logical.Storage, names []string) ([]*roleEntry, error) {
	roles := make([]*roleEntry, len(names))
	for i, name := range names {
		if state, _ := b.store.get(name); state.role != nil {
			roles[i] = state.role
			continue
		}
		r, err := getRole(ctx, s, name)
		if err != nil {
			return nil, err
		}
		roles[i] = r
	}
	return roles, nil
}

func (b *backend) pathRoleExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	name := d.Get(fieldName).(string)
	if validateRoleName(name) != "" {
		return false, nil
	}
	role, err := getRole(ctx, req.Storage, name)
	return role != nil, err
}

func (b *backend) pathRoleRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if msg := validateRoleName(name); msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	role, err := getRole(ctx, req.Storage, name)
	if err != nil || role == nil {
		return nil, err
	}
	data := role.toResponseData()
	// A refusal remembered in storage shows after a reload too; without a
	// usable config there is nothing to refuse.
	if _, cfg, err := b.client(ctx, req.Storage); err == nil {
		if err := b.loadRejection(ctx, req.Storage, name, role, cfg); err != nil {
			return nil, err
		}
	}
	state, _ := b.store.get(name)
	addStatus(data, state, b.store.rejection(name, loginKeyOf(role), b.now()), b.now())
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	var p problems
	badName := validateRoleName(name)
	if badName != "" {
		p = append(p, badName)
	}
	unknownFields(d, &p)
	if badName != "" {
		// Nothing is stored under a bad name; still name every bad field.
		applyRoleFields(&roleEntry{}, false, d, &p)
		return p.response(), nil
	}

	// A write that needs no login is one read-modify-write under the
	// role's lock. The stamp comes first, for the status a verify records.
	_, st := b.store.get(name)
	unlock := b.lockRole(name)
	existing, err := getRole(ctx, req.Storage, name)
	if err != nil {
		unlock()
		return nil, err
	}
	role, verify, resp := b.roleFromRequest(req.Operation, name, existing, d, p)
	written := loginWritten(d)
	if resp != nil || !verify {
		defer unlock()
		if resp != nil {
			return resp, nil
		}
		return nil, b.storeRole(ctx, req.Storage, name, existing, role, written)
	}
	unlock()

	// A new or changed login is checked first, with no lock held while
	// MetaKraftwerk answers; it is stored only if no other write landed
	// meanwhile.
	if resp, err := b.verifyLogin(ctx, req.Storage, st, name, existing, role, written); resp != nil || err != nil {
		return resp, err
	}
	role.VerifiedAt = b.now().UTC()

	defer b.lockRole(name)()
	current, err := getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if resp := checkOperation(req.Operation, name, current); resp != nil {
		return resp, nil
	}
	if !sameStoredRole(existing, current) {
		return nil, logical.CodedError(http.StatusConflict, fmt.Sprintf(
			"role %q was changed by another request while this write checked its login; nothing was stored. Send the write again", name))
	}
	return nil, b.storeRole(ctx, req.Storage, name, current, role, written)
}

// loginWritten reports whether the request names password: a written
// login, which starts afresh (verified when verify is on, its remembered
// rejection forgotten) whether or not it equals the stored one. So a write
// answers the same for the stored password as for another, and writing the
// current password after fixing the account in MetaKraftwerk ends a
// refusal, as the refusal's message says. The email is no secret (a role
// read shows it): writing it unchanged, as Terraform does with every
// update, is no new login.
func loginWritten(d *framework.FieldData) bool {
	_, password := d.GetOk(fieldPassword)
	return password
}

// roleFromRequest is existing with the request's fields applied, and
// whether the write must verify its login first; or the 400 that refuses
// the request (collecting the problems p holds already).
func (b *backend) roleFromRequest(op logical.Operation, name string, existing *roleEntry, d *framework.FieldData, p problems) (*roleEntry, bool, *logical.Response) {
	if resp := checkOperation(op, name, existing); resp != nil {
		return nil, false, resp
	}
	role := &roleEntry{ReuseMinRemaining: defaultReuseMinRemaining}
	if existing != nil {
		*role = *existing
		role.Projects = slices.Clone(existing.Projects)
	}
	applyRoleFields(role, existing == nil, d, &p)
	if resp := p.response(); resp != nil {
		return nil, false, resp
	}
	now := b.now().UTC()
	role.UpdatedAt = now
	if existing == nil || role.Password != existing.Password {
		role.PasswordUpdatedAt = now
	}
	loginChanged := existing == nil || !sameLogin(role, existing)
	if loginChanged {
		role.VerifiedAt = time.Time{}
	}
	return role, (loginChanged || loginWritten(d)) && d.Get(fieldVerify).(bool), nil
}

// checkOperation refuses a create of a role that exists by now, and an
// update of one that no longer does: Vault authorised the request for
// what the role was when it arrived, and a retry is authorised for what
// it is now.
func checkOperation(op logical.Operation, name string, current *roleEntry) *logical.Response {
	switch {
	case op == logical.CreateOperation && current != nil:
		return logical.ErrorResponse(fmt.Sprintf("role %q was created by another request meanwhile; nothing was stored. Send the write again to update it", name))
	case op == logical.UpdateOperation && current == nil:
		return logical.ErrorResponse(fmt.Sprintf("role %q was deleted by another request meanwhile; nothing was stored. Send the write again to create it", name))
	}
	return nil
}

// sameStoredRole reports whether two reads of a role found the same stored
// role, but for verified_at (which verify-role sets).
func sameStoredRole(a, b *roleEntry) bool {
	if a == nil || b == nil {
		return a == b
	}
	ac, bc := *a, *b
	ac.VerifiedAt, bc.VerifiedAt = time.Time{}, time.Time{}
	aj, errA := json.Marshal(&ac) //nolint:gosec // G117: compared in memory, never written or shown
	bj, errB := json.Marshal(&bc) //nolint:gosec // G117: as above
	return errA == nil && errB == nil && bytes.Equal(aj, bj)
}

// verifyLogin logs in with role's login and checks its projects, for a
// role write replacing existing (nil for a new role); the 400, 429, 502 or
// 504 that refuses the write, or nothing. The login the role already has
// is checked at the role's gate, after forgetting its remembered rejection
// when the write names it (written). A new one, which is not the role's
// until it is stored, is checked with a login of its own that the login
// memory does not record (a rejected new login is not the stored one's
// verdict, and the next write of it is the operator's new attempt); it
// takes one of the role's login slots, so that writes cannot put more
// than max_concurrent_logins logins of the role in flight either.
func (b *backend) verifyLogin(ctx context.Context, s logical.Storage, st stamp, name string, existing, role *roleEntry, written bool) (*logical.Response, error) {
	client, cfg, err := b.client(ctx, s)
	if err != nil {
		return nil, err
	}
	uctx, cancel := upstreamBudget(ctx, cfg)
	defer cancel()
	req := gateRequest{st: st, name: name, role: role, client: client, cfg: cfg, storage: s, purpose: purposeVerify}
	var v *verification
	if existing != nil && loginKeyOf(existing) == loginKeyOf(role) {
		if written {
			b.forgetStoredRejections(ctx, s, name)
		}
		if err := b.loadRejection(ctx, s, name, role, cfg); err != nil {
			return nil, err
		}
		v, err = b.verifyRole(uctx, req, role.Projects)
	} else {
		slotOf := role
		if existing != nil {
			slotOf = existing
		}
		v, err = b.verifyNewLogin(uctx, req, loginKeyOf(slotOf))
	}
	if err == nil && len(v.missing) > 0 {
		err = &errMissingProjects{role: name, email: role.Email, missing: v.missing}
	}
	if err != nil {
		return errorResponse(fmt.Errorf("verify: %w", err))
	}
	return nil, nil
}

// storeRole puts the role (replacing old, nil for a new one) and drops what
// the engine holds for it, whatever storage answered: a put that failed may
// still have been applied. A written login (loginWritten), changed or not,
// starts without a remembered rejection.
func (b *backend) storeRole(ctx context.Context, s logical.Storage, name string, old, role *roleEntry, written bool) error {
	err := putRole(ctx, s, name, role)
	b.store.evict(name)
	if old != nil && (written || old.Email != role.Email || old.Password != role.Password) {
		b.forgetStoredRejections(ctx, s, name)
	}
	return err
}

// applyRoleFields copies the fields present in d onto role (a partial
// update), validating each and the combination.
func applyRoleFields(role *roleEntry, create bool, d *framework.FieldData, p *problems) {
	if v, ok := d.GetOk(fieldEmail); ok {
		email := strings.TrimSpace(v.(string))
		if msg := unsafeText(email); msg != "" {
			p.add(fieldEmail, "%s", msg)
		} else if msg := checkEmail(email); msg != "" {
			p.add(fieldEmail, "%s", msg)
		}
		role.Email = email
	} else if create {
		p.add(fieldEmail, "is required when creating a role")
	}

	if v, ok := d.GetOk(fieldPassword); ok {
		pw := v.(string)
		switch {
		case pw == "":
			p.add(fieldPassword, "must not be empty")
		case len(pw) > maxPasswordLen:
			p.add(fieldPassword, "must be at most %d bytes", maxPasswordLen)
		}
		role.Password = pw
	} else if create {
		p.add(fieldPassword, "is required when creating a role")
	}

	for _, f := range []struct {
		name string
		dst  *time.Duration
	}{{fieldTTL, &role.TTL}, {fieldMaxTTL, &role.MaxTTL}, {fieldReuseMinRemaining, &role.ReuseMinRemaining}} {
		if v, ok := d.GetOk(f.name); ok {
			// The SDK refuses a negative duration before the handler runs.
			*f.dst = time.Duration(v.(int)) * time.Second
		}
	}
	if role.TTL > 0 && role.MaxTTL > 0 && role.TTL > role.MaxTTL {
		p.add(fieldTTL, "%s must not exceed %s %s", formatDuration(role.TTL), fieldMaxTTL, formatDuration(role.MaxTTL))
	}
	if role.ReuseMinRemaining >= documentedTokenLifetime {
		p.add(fieldReuseMinRemaining, "must be less than the %s token lifetime", formatDuration(documentedTokenLifetime))
	}

	if v, ok := d.GetOk(fieldDescription); ok {
		desc := v.(string)
		if len(desc) > maxDescriptionLen {
			p.add(fieldDescription, "must be at most %d bytes", maxDescriptionLen)
		} else if msg := unsafeText(desc); msg != "" {
			p.add(fieldDescription, "%s", msg)
		}
		role.Description = desc
	}

	if v, ok := d.GetOk(fieldProjects); ok {
		role.Projects = normaliseProjects(v.([]string), p)
	}

	if v, ok := d.GetOk(fieldReuseTokens); ok {
		role.ReuseTokens = v.(bool)
	}

	if v, ok := d.GetOk(fieldMaxConcurrentLogins); ok {
		if n := v.(int); n < 1 || n > maxMaxConcurrentLogins {
			p.add(fieldMaxConcurrentLogins, "must be between 1 and %d, got %d", maxMaxConcurrentLogins, n)
		} else {
			role.MaxConcurrentLogins = n
		}
	}
}

// checkEmail returns why email is not a plausible bare address, or "".
func checkEmail(email string) string {
	if email == "" {
		return "must not be empty"
	}
	if len(email) > maxEmailLen {
		return fmt.Sprintf("must be at most %d characters", maxEmailLen)
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return fmt.Sprintf("%q is not a plain email address such as ci@example.com", email)
	}
	at := strings.LastIndexByte(email, '@')
	if at < 1 || at == len(email)-1 || strings.ContainsAny(email, " \t") {
		return fmt.Sprintf("%q is not a plain email address such as ci@example.com", email)
	}
	return ""
}

// normaliseProjects trims, drops duplicates and checks project names. It is
// linear in the input, whatever its size.
func normaliseProjects(in []string, p *problems) []string {
	if len(in) > 10*maxProjects {
		p.add(fieldProjects, "at most %d projects, got %d entries", maxProjects, len(in))
		return nil
	}
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	for i, name := range in {
		name = strings.TrimSpace(name)
		switch {
		case name == "":
			p.add(fieldProjects, "project names must not be empty")
			continue
		case len(name) > maxProjectNameLen:
			p.add(fieldProjects, "project name %.40q… is longer than %d bytes", name, maxProjectNameLen)
			continue
		case unsafeText(name) != "":
			p.add(fieldProjects, "entry %d %s", i+1, unsafeText(name))
			continue
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	if len(out) > maxProjects {
		p.add(fieldProjects, "at most %d projects, got %d", maxProjects, len(out))
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (b *backend) pathRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	if msg := validateRoleName(name); msg != "" {
		return logical.ErrorResponse(msg), nil
	}
	defer b.lockRole(name)()
	err := req.Storage.Delete(ctx, roleStoragePrefix+name)
	b.store.evict(name)
	b.forgetStoredRejections(ctx, req.Storage, name)
	b.metrics.forget(name)
	if err != nil {
		return nil, fmt.Errorf("deleting role %q: %w", name, err)
	}
	return nil, nil
}

const pathRolesListHelpSyn = `List the roles.`

const pathRolesListHelpDesc = `
Lists the names of the roles of this engine, in order. With limit, a page of
at most limit roles with key_info (email, reuse_tokens, project_count, the
start of the description); after pages on from the last name of the previous
page.
`

const pathRolesHelpSyn = `Manage the MetaKraftwerk logins that tokens are minted for.`

const pathRolesHelpDesc = `
A role holds one MetaKraftwerk login (email and password). Reading
creds/<role> logs in with it and returns an access token. Give every role its
own narrowly privileged MetaKraftwerk user: a token carries all the rights of
the account that logged in.

On create, on an update that sends password (even unchanged), changes email or
changes projects, the engine logs in once (and checks projects)
unless verify=false; a rejected login or a missing project fails the write
and nothing is stored. Sending password, or a new email, also ends a
remembered rejected login of the role.

Updates are partial: only the fields sent change. The password is write-only;
a read shows password_set instead.

ttl and max_ttl cap the lease below the token's own expiry less expiry_leeway.
With reuse_tokens=true the current token is handed out again while it has at
least reuse_min_remaining left; concurrent reads then share one login.
`

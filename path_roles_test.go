package metakraftwerk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

func TestRoleCreateReadListDelete(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("team-a-ci", map[string]any{
		fieldDescription: "CI of team A", fieldTTL: "1h", fieldMaxTTL: "2h",
		fieldProjects: "DEMO_PROJECT, CI_PROJECT", fieldReuseTokens: true, fieldReuseMinRemaining: "30m",
	})
	got := env.mustRead("roles/team-a-ci").Data
	written := env.clock.Now().Format(time.RFC3339)
	want := map[string]any{
		fieldEmail: testEmail, fieldPasswordSet: true, fieldTTL: int64(3600), fieldMaxTTL: int64(7200),
		fieldDescription: "CI of team A", fieldProjects: []string{"DEMO_PROJECT", "CI_PROJECT"},
		fieldReuseTokens: true, fieldReuseMinRemaining: int64(1800), fieldMaxConcurrentLogins: defaultMaxConcurrentLogins,
		fieldUpdatedAt: written, fieldPasswordUpdatedAt: written, fieldVerifiedAt: written,
		fieldLastLoginAt: "", fieldLastError: "", fieldLastErrorAt: "", fieldLoginRefusedUntil: "",
		fieldSharedTokenID: "", fieldSharedTokenExpiresAt: "",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("role read = %#v\nwant %#v", got, want)
	}
	if _, ok := got[fieldPassword]; ok {
		t.Fatal("role read returned the password field")
	}

	env.createRole("team-b-ci", nil)
	resp, err := env.do(logical.ListOperation, "roles/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if keys := resp.Data["keys"]; !reflect.DeepEqual(keys, []string{"team-a-ci", "team-b-ci"}) {
		t.Fatalf("list = %v", keys)
	}
	wantInfo := map[string]any{
		"team-a-ci": map[string]any{fieldEmail: testEmail, fieldReuseTokens: true, fieldDescription: "CI of team A", fieldProjectCount: 2},
		"team-b-ci": map[string]any{fieldEmail: testEmail, fieldReuseTokens: false, fieldDescription: "", fieldProjectCount: 0},
	}
	// A plain LIST of a mount of one page answers as that page: vault's
	// CLI sends no limit with list -detailed.
	if info := resp.Data["key_info"]; !reflect.DeepEqual(info, wantInfo) {
		t.Fatalf("plain list key_info = %#v\nwant %#v", info, wantInfo)
	}
	resp, err = env.do(logical.ListOperation, "roles/", map[string]any{fieldLimit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if info := resp.Data["key_info"]; !reflect.DeepEqual(info, wantInfo) {
		t.Fatalf("list key_info = %#v\nwant %#v", info, wantInfo)
	}

	if _, err := env.do(logical.DeleteOperation, "roles/team-a-ci", nil); err != nil {
		t.Fatal(err)
	}
	resp, err = env.do(logical.ReadOperation, "roles/team-a-ci", nil)
	if err != nil || resp != nil {
		t.Fatalf("read of deleted role = %#v, %v; want 404 (nil, nil)", resp, err)
	}
}

func TestRoleDefaults(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	got := env.mustRead("roles/ci").Data
	if got[fieldTTL] != int64(0) || got[fieldMaxTTL] != int64(0) || got[fieldReuseTokens] != false ||
		got[fieldReuseMinRemaining] != int64(3600) || !reflect.DeepEqual(got[fieldProjects], []string{}) {
		t.Fatalf("defaults = %#v", got)
	}
}

func TestRoleExistenceCheck(t *testing.T) {
	env := newTestBackend(t)
	check := func(name string) bool {
		t.Helper()
		p := env.b.Route("roles/" + name)
		fd := &framework.FieldData{Raw: map[string]any{fieldName: name}, Schema: p.Fields}
		ok, err := env.b.pathRoleExists(context.Background(), &logical.Request{Storage: env.storage}, fd)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if check("ci") {
		t.Fatal("role exists before creation")
	}
	env.createRole("ci", nil)
	if !check("ci") {
		t.Fatal("role does not exist after creation")
	}
}

func TestRolePartialUpdate(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldDescription: "first", fieldTTL: "1h", fieldProjects: "DEMO_PROJECT"})
	stats := env.mk.Stats().Logins
	// Only the description changes: no login, everything else kept.
	env.mustWrite("roles/ci", map[string]any{fieldDescription: "second"})
	if n := env.mk.Stats().Logins; n != stats {
		t.Errorf("a description-only update logged in (%d -> %d)", stats, n)
	}
	got := env.mustRead("roles/ci").Data
	if got[fieldDescription] != "second" || got[fieldTTL] != int64(3600) || got[fieldEmail] != testEmail ||
		!reflect.DeepEqual(got[fieldProjects], []string{"DEMO_PROJECT"}) {
		t.Fatalf("after partial update = %#v", got)
	}
	role, err := getRole(context.Background(), env.storage, "ci")
	if err != nil || role.Password != testPassword {
		t.Fatalf("password not kept across a partial update")
	}
	// Changing the login verifies again.
	env.mustWrite("roles/ci", map[string]any{fieldEmail: otherEmail, fieldPassword: otherPassword, fieldProjects: ""})
	if n := env.mk.Stats().Logins; n != stats+1 {
		t.Errorf("changing the login made %d logins, want 1", n-stats)
	}
	if got := env.mustRead("roles/ci").Data[fieldEmail]; got != otherEmail {
		t.Errorf("email = %v", got)
	}
}

// A role stored before the checks on control characters and bidirectional
// overrides existed still reads and mints; the checks refuse new values
// with the rune and its place, never the value.
func TestRoleInputHygieneKeepsStoredValues(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	role, _ := getRole(context.Background(), env.storage, "ci")
	role.Description = "old\x1b[31m \u202eeulav"
	role.Projects = []string{"LEGACY\u2066"}
	if err := putRole(context.Background(), env.storage, "ci", role); err != nil {
		t.Fatal(err)
	}
	env.b.store.evict("ci")
	if got := env.mustRead("roles/ci").Data[fieldDescription]; got != role.Description {
		t.Fatalf("description %q", got)
	}
	env.mustRead("creds/ci")
	resp, err := env.do(logical.UpdateOperation, "roles/ci", map[string]any{fieldDescription: "new\x1b[31m"})
	want := "description: must not contain control, format or bidirectional characters or line separators (U+001B at byte 3)"
	if statusOf(resp, err) != 400 || errorText(resp, err) != want {
		t.Fatalf("%d %q, want %q", statusOf(resp, err), errorText(resp, err), want)
	}
	// A write of other fields keeps the stored values as they are.
	env.mustWrite("roles/ci", map[string]any{fieldTTL: "5m", fieldVerify: false})
	if got := env.mustRead("roles/ci").Data; got[fieldDescription] != role.Description {
		t.Fatalf("after a partial write: %#v", got)
	}
}

func TestRoleValidation(t *testing.T) {
	long := strings.Repeat("a", 200)
	tests := []struct {
		name   string
		role   string
		data   map[string]any
		field  string
		create bool
	}{
		{"missing email on create", "new", map[string]any{fieldPassword: "x"}, fieldEmail, true},
		{"missing password on create", "new", map[string]any{fieldEmail: testEmail}, fieldPassword, true},
		{"bad email", "ci", map[string]any{fieldEmail: "not-an-email"}, fieldEmail, false},
		{"email with display name", "ci", map[string]any{fieldEmail: "CI <ci@example.com>"}, fieldEmail, false},
		{"email without domain", "ci", map[string]any{fieldEmail: "ci@"}, fieldEmail, false},
		{"empty email", "ci", map[string]any{fieldEmail: ""}, fieldEmail, false},
		{"empty password", "ci", map[string]any{fieldPassword: ""}, fieldPassword, false},
		{"huge password", "ci", map[string]any{fieldPassword: strings.Repeat("p", 2000)}, fieldPassword, false},
		{"negative ttl", "ci", map[string]any{fieldTTL: "-1h"}, fieldTTL, false},
		{"ttl over max_ttl", "ci", map[string]any{fieldTTL: "2h", fieldMaxTTL: "1h"}, fieldTTL, false},
		{"ttl not a duration", "ci", map[string]any{fieldTTL: "forever"}, fieldTTL, false},
		{"negative max_ttl", "ci", map[string]any{fieldMaxTTL: "-1s"}, fieldMaxTTL, false},
		{"reuse_min_remaining over lifetime", "ci", map[string]any{fieldReuseMinRemaining: "21h"}, fieldReuseMinRemaining, false},
		{"reuse_tokens not a bool", "ci", map[string]any{fieldReuseTokens: "perhaps"}, fieldReuseTokens, false},
		{"max_concurrent_logins 0", "ci", map[string]any{fieldMaxConcurrentLogins: 0}, fieldMaxConcurrentLogins, false},
		{"max_concurrent_logins over 64", "ci", map[string]any{fieldMaxConcurrentLogins: 65}, fieldMaxConcurrentLogins, false},
		{"max_concurrent_logins not a number", "ci", map[string]any{fieldMaxConcurrentLogins: "many"}, fieldMaxConcurrentLogins, false},
		{"empty project name", "ci", map[string]any{fieldProjects: []string{"A", " "}}, fieldProjects, false},
		{"too many projects", "ci", map[string]any{fieldProjects: strings.Repeat("P,", 101) + "Q"}, fieldProjects, false},
		{"huge project list", "ci", map[string]any{fieldProjects: strings.Repeat("P,", 200000)}, fieldProjects, false},
		{"huge description", "ci", map[string]any{fieldDescription: strings.Repeat("d", 2000)}, fieldDescription, false},
		{"NUL in description", "ci", map[string]any{fieldDescription: "ok\x00hidden"}, fieldDescription, false},
		{"ANSI escape in description", "ci", map[string]any{fieldDescription: "\x1b[2Jowned"}, fieldDescription, false},
		{"bidi override in description", "ci", map[string]any{fieldDescription: "prod \u202etset"}, fieldDescription, false},
		{"bidi isolate in description", "ci", map[string]any{fieldDescription: "a\u2066b"}, fieldDescription, false},
		{"ANSI escape in email", "ci", map[string]any{fieldEmail: "ci\x1b[0m@example.com"}, fieldEmail, false},
		{"bidi override in email", "ci", map[string]any{fieldEmail: "ci\u202d@example.com"}, fieldEmail, false},
		{"newline in a project", "ci", map[string]any{fieldProjects: []string{"A", "B\nC"}}, fieldProjects, false},
		{"bidi override in a project", "ci", map[string]any{fieldProjects: "A,\u2067B"}, fieldProjects, false},
		{"unknown field", "ci", map[string]any{"passwort": "x"}, "passwort", false},
		{"name with slash", "a/b", map[string]any{fieldEmail: testEmail, fieldPassword: testPassword}, fieldName, true},
		{"name with space", "a b", map[string]any{fieldEmail: testEmail, fieldPassword: testPassword}, fieldName, true},
		{"name starting with dot", ".ci", map[string]any{fieldEmail: testEmail, fieldPassword: testPassword}, fieldName, true},
		{"name too long", long, map[string]any{fieldEmail: testEmail, fieldPassword: testPassword}, fieldName, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestBackend(t)
			env.createRole("ci", map[string]any{fieldDescription: "keep"})
			before := env.mustRead("roles/ci").Data
			resp, err := env.do(logical.UpdateOperation, "roles/"+tt.role, tt.data)
			if err != nil || resp == nil || !resp.IsError() {
				t.Fatalf("want a 400, got resp=%#v err=%v", resp, err)
			}
			if msg := resp.Error().Error(); !strings.Contains(msg, tt.field) {
				t.Errorf("error %q does not name %q", msg, tt.field)
			}
			// A write whose verify logs in with the stored login (new
			// projects) records that login in the role's status.
			after := env.mustRead("roles/ci").Data
			delete(before, fieldLastLoginAt)
			delete(after, fieldLastLoginAt)
			if !reflect.DeepEqual(before, after) {
				t.Errorf("role changed by a rejected write:\nbefore %#v\nafter  %#v", before, after)
			}
			if tt.create {
				resp, _ := env.do(logical.ListOperation, "roles/", nil)
				if keys := resp.Data["keys"]; !reflect.DeepEqual(keys, []string{"ci"}) {
					t.Errorf("a rejected create stored something: %v", keys)
				}
			}
		})
	}
}

func TestRoleBadNameOnReadAndDelete(t *testing.T) {
	env := newTestBackend(t)
	for _, op := range []logical.Operation{logical.ReadOperation, logical.DeleteOperation} {
		resp, err := env.do(op, "roles/bad name", nil)
		if msg := errorText(resp, err); err != nil || !strings.Contains(msg, fieldName) {
			t.Errorf("%s: want a 400 naming %s, got %q (err %v)", op, fieldName, msg, err)
		}
	}
}

func TestRoleVerify(t *testing.T) {
	t.Run("wrong password is rejected and nothing stored", func(t *testing.T) {
		env := newTestBackend(t)
		resp, err := env.do(logical.UpdateOperation, "roles/ci", map[string]any{fieldEmail: testEmail, fieldPassword: "wrong-" + testPassword})
		env.secrets = append(env.secrets, "wrong-"+testPassword)
		msg := errorText(resp, err)
		if err != nil || !strings.Contains(msg, `MetaKraftwerk rejected the login for role "ci": Invalid login`) {
			t.Fatalf("got %q (err %v)", msg, err)
		}
		if r, _ := env.do(logical.ReadOperation, "roles/ci", nil); r != nil {
			t.Fatal("role stored despite a rejected login")
		}
	})
	t.Run("verify=false stores without contacting MetaKraftwerk", func(t *testing.T) {
		env := newTestBackend(t)
		before := env.mk.Stats().LoginRequests
		env.mustWrite("roles/ci", map[string]any{fieldEmail: "nobody@example.com", fieldPassword: "whatever", fieldVerify: false})
		if n := env.mk.Stats().LoginRequests; n != before {
			t.Fatalf("verify=false made %d login requests", n-before)
		}
		if _, ok := env.mustRead("roles/ci").Data[fieldVerify]; ok {
			t.Fatal("verify must not be stored")
		}
	})
	t.Run("visible projects pass", func(t *testing.T) {
		env := newTestBackend(t)
		env.createRole("ci", map[string]any{fieldProjects: "DEMO_PROJECT,CI_PROJECT"})
	})
	t.Run("missing project is named and nothing stored", func(t *testing.T) {
		env := newTestBackend(t)
		resp, err := env.do(logical.UpdateOperation, "roles/ci", map[string]any{
			fieldEmail: testEmail, fieldPassword: testPassword, fieldProjects: "DEMO_PROJECT,OPS_PROJECT",
		})
		msg := errorText(resp, err)
		if err != nil || !strings.Contains(msg, `"OPS_PROJECT" (not visible)`) || strings.Contains(msg, `"DEMO_PROJECT"`) {
			t.Fatalf("got %q (err %v)", msg, err)
		}
		if r, _ := env.do(logical.ReadOperation, "roles/ci", nil); r != nil {
			t.Fatal("role stored despite a missing project")
		}
	})
	t.Run("update to a missing project keeps the old role", func(t *testing.T) {
		env := newTestBackend(t)
		env.createRole("ci", map[string]any{fieldProjects: "DEMO_PROJECT"})
		resp, _ := env.do(logical.UpdateOperation, "roles/ci", map[string]any{fieldProjects: "NOPE"})
		if !strings.Contains(errorText(resp, nil), `"NOPE"`) {
			t.Fatalf("got %q", errorText(resp, nil))
		}
		if got := env.mustRead("roles/ci").Data[fieldProjects]; !reflect.DeepEqual(got, []string{"DEMO_PROJECT"}) {
			t.Fatalf("projects = %v", got)
		}
	})
	t.Run("upstream down gives a 502 and nothing stored", func(t *testing.T) {
		env := newTestBackend(t)
		env.mustWrite("config", map[string]any{fieldMaxRetries: 0})
		env.mk.SetFaults(devserver.Faults{FailNext: 1, FailStatus: 503})
		resp, err := env.do(logical.UpdateOperation, "roles/ci", map[string]any{fieldEmail: testEmail, fieldPassword: testPassword})
		if statusOf(resp, err) != 502 || !strings.Contains(errorText(resp, err), "verify") {
			t.Fatalf("status %d, %q", statusOf(resp, err), errorText(resp, err))
		}
		if r, _ := env.do(logical.ReadOperation, "roles/ci", nil); r != nil {
			t.Fatal("role stored although verification could not run")
		}
	})
}

func TestRoleStorageFailures(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldDescription: "kept"})
	env.storage.Underlying().FailPut(true)
	resp, err := env.do(logical.UpdateOperation, "roles/ci", map[string]any{fieldDescription: "lost"})
	if err == nil {
		t.Fatalf("want an error, got %#v", resp)
	}
	env.storage.Underlying().FailPut(false)
	if got := env.mustRead("roles/ci").Data[fieldDescription]; got != "kept" {
		t.Fatalf("description = %v", got)
	}
	env.storage.Underlying().FailList(true)
	if _, err := env.do(logical.ListOperation, "roles/", nil); err == nil {
		t.Error("list: want an error when storage fails")
	}
	env.storage.Underlying().FailList(false)
	env.storage.Underlying().FailGet(true)
	for _, p := range []string{"roles/ci", "creds/ci"} {
		if _, err := env.do(logical.ReadOperation, p, nil); err == nil {
			t.Errorf("%s: want an error when storage fails", p)
		}
	}
	env.storage.Underlying().FailGet(false)
	env.storage.Underlying().FailDelete(true)
	if _, err := env.do(logical.DeleteOperation, "roles/ci", nil); err == nil {
		t.Error("delete: want an error when storage fails")
	}
	env.storage.Underlying().FailDelete(false)
	env.mustRead("roles/ci")
}

func TestRoleReadNeverShowsPassword(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", nil)
	resp := env.mustRead("roles/ci")
	if s := fmtResp(resp); strings.Contains(s, testPassword) {
		t.Fatal("role read contains the password")
	}
	if resp.Data[fieldPasswordSet] != true {
		t.Fatal("password_set is not true")
	}
}

func fmtResp(resp *logical.Response) string { return fmt.Sprint(resp.Data) }

// A role write whose storage put fails after it was applied still evicts
// what the engine held: the next read uses the stored login.
func TestRoleWriteEvictsWhenPutFails(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldReuseTokens: true})
	env.mustRead("creds/ci") // role and token in memory
	env.reqStorage = appliedThenFailedStorage{env.storage}
	resp, err := env.do(logical.UpdateOperation, "roles/ci", map[string]any{fieldEmail: otherEmail, fieldPassword: otherPassword})
	if err == nil {
		t.Fatalf("want the put's error, got %v", respErr(resp))
	}
	env.reqStorage = env.storage
	assertThreeReadsAs(t, env, "ci", otherEmail)

	// Deleting, too.
	env.reqStorage = deleteAppliedThenFailedStorage{env.storage}
	if _, err := env.do(logical.DeleteOperation, "roles/ci", nil); err == nil {
		t.Fatal("want the delete's error")
	}
	env.reqStorage = env.storage
	if resp, _ := env.do(logical.ReadOperation, "creds/ci", nil); resp == nil || !resp.IsError() {
		t.Fatal("a deleted role is still served from memory")
	}
}

// deleteAppliedThenFailedStorage applies every Delete and reports it failed.
type deleteAppliedThenFailedStorage struct{ logical.Storage }

func (s deleteAppliedThenFailedStorage) Delete(ctx context.Context, key string) error {
	if err := s.Storage.Delete(ctx, key); err != nil {
		return err
	}
	return errors.New("injected: the delete was applied but its answer was lost")
}

// The project check reads every page of a paginated Feathers answer.
func TestRoleVerifyPaginatedProjects(t *testing.T) {
	var projects []string
	for i := range 27 {
		projects = append(projects, fmt.Sprintf("P%02d", i))
	}
	env := newTestBackend(t, withProjects(projects, &devserver.Paginate{Default: 10, Max: 10}))
	before := env.mk.Stats().APIRequests
	env.createRole("ci", map[string]any{fieldProjects: "P00,P13,P26"}) // pages 1, 2 and 3
	if n := env.mk.Stats().APIRequests - before; n != 3 {
		t.Errorf("%d project requests for 27 projects in pages of 10, want 3", n)
	}
	resp, err := env.do(logical.UpdateOperation, "roles/ci", map[string]any{fieldProjects: "P26,P27"})
	if msg := errorText(resp, err); statusOf(resp, err) != 400 || !strings.Contains(msg, `"P27" (not visible)`) || strings.Contains(msg, "P26") {
		t.Fatalf("P27 beyond the last page: %d %q", statusOf(resp, err), msg)
	}
}

// A write that completes while another write of the same role is inside its
// verify login is not undone when that login returns: writes of a role are
// serialised, each starting from the last acknowledged version.
// A write that checks its login holds no lock while MetaKraftwerk answers:
// a competing write of the same role finishes meanwhile, and the checking
// write then stores nothing and says to send it again. No acknowledged
// write is undone.
func TestRoleWritesNeverLoseUpdates(t *testing.T) {
	cases := []struct {
		name  string
		op    logical.Operation
		data  map[string]any
		check func(t *testing.T, role *roleEntry)
		// status and text of writer A's answer.
		status int
		text   string
	}{
		{"ttl change", logical.UpdateOperation, map[string]any{fieldTTL: "5m"}, func(t *testing.T, role *roleEntry) {
			if role == nil || role.TTL != 5*time.Minute || !slices.Equal(role.Projects, []string{"DEMO_PROJECT"}) {
				t.Fatalf("stored role is not writer B's: %+v", redacted(role))
			}
		}, 409, `role "ci" was changed by another request while this write checked its login; nothing was stored. Send the write again`},
		{"password change", logical.UpdateOperation, map[string]any{fieldPassword: "rotated-" + testPassword, fieldVerify: false}, func(t *testing.T, role *roleEntry) {
			if role == nil || role.Password != "rotated-"+testPassword || !slices.Equal(role.Projects, []string{"DEMO_PROJECT"}) {
				t.Fatalf("stored role lost the acknowledged password rotation: %+v", redacted(role))
			}
		}, 409, "was changed by another request"},
		{"delete", logical.DeleteOperation, nil, func(t *testing.T, role *roleEntry) {
			if role != nil {
				t.Fatalf("an acknowledged delete was undone: %+v", redacted(role))
			}
		}, 400, `role "ci" was deleted by another request meanwhile; nothing was stored. Send the write again to create it`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := newTestBackend(t)
			env.secrets = append(env.secrets, "rotated-"+testPassword)
			gate := env.gateLogins()
			env.createRole("ci", map[string]any{fieldTTL: "1h", fieldProjects: "DEMO_PROJECT"})

			// Writer A changes projects, so it verifies: held at MetaKraftwerk.
			reached, release := gate.arm(nil)
			aDone, aResult := env.doAsync(logical.UpdateOperation, "roles/ci", map[string]any{fieldProjects: "CI_PROJECT"})
			<-reached
			// Writer B finishes while A's login is still held.
			if resp, err := env.do(c.op, "roles/ci", c.data); err != nil || (resp != nil && resp.IsError()) {
				t.Fatalf("writer B: %v", errorText(resp, err))
			}
			select {
			case <-aDone:
				t.Fatal("writer A finished while its login was held")
			default:
			}
			release()
			<-aDone
			if resp, err := aResult(); statusOf(resp, err) != c.status || !strings.Contains(errorText(resp, err), c.text) {
				t.Fatalf("writer A: %d %q", statusOf(resp, err), errorText(resp, err))
			}
			role, err := getRole(context.Background(), env.storage, "ci")
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, role)
			// Sent again, A's write is applied on top of B's.
			if c.op != logical.DeleteOperation {
				env.mustWrite("roles/ci", map[string]any{fieldProjects: "CI_PROJECT", fieldVerify: false})
				if role, _ := getRole(context.Background(), env.storage, "ci"); !slices.Equal(role.Projects, []string{"CI_PROJECT"}) {
					t.Fatalf("the retried write: %+v", redacted(role))
				}
			}
		})
	}
}

// The role's lock is not held across the upstream login: while one write
// of a role waits for MetaKraftwerk, a write of another role in the same
// lock stripe, and a write of the same role that needs no login, both
// finish.
func TestRoleLockNotHeldAcrossTheLogin(t *testing.T) {
	env := newTestBackend(t)
	gate := env.gateLogins()
	env.createRole("ci", nil)
	// A role name in the same lock stripe as "ci".
	stripe := locksutil.LockIndexForKey("ci")
	other := ""
	for i := 0; other == ""; i++ {
		if n := fmt.Sprintf("role-%d", i); locksutil.LockIndexForKey(n) == stripe {
			other = n
		}
	}
	env.createRole(other, nil)
	env.secrets = append(env.secrets, "rotated-"+testPassword)

	reached, release := gate.arm(nil)
	aDone, aResult := env.doAsync(logical.UpdateOperation, "roles/ci", map[string]any{fieldProjects: "CI_PROJECT"})
	<-reached
	env.mustWrite("roles/"+other, map[string]any{fieldTTL: "10m"})
	env.mustWrite("roles/ci", map[string]any{fieldPassword: "rotated-" + testPassword, fieldVerify: false})
	env.mustWrite("verify-role/"+other, nil)
	select {
	case <-aDone:
		t.Fatal("the held write finished early")
	default:
	}
	release()
	if resp, err := aResult(); statusOf(resp, err) != 409 {
		t.Fatalf("the held write: %d %q", statusOf(resp, err), errorText(resp, err))
	}
	if role, _ := getRole(context.Background(), env.storage, "ci"); role.Password != "rotated-"+testPassword {
		t.Fatal("the password change was undone")
	}
}

// A create authorised because the role did not exist yet is refused when
// the role exists by the time it is applied: a token that may only create
// roles must not overwrite one created meanwhile.
func TestCreateOfARoleCreatedMeanwhile(t *testing.T) {
	env := newTestBackend(t)
	gate := env.gateLogins()
	env.secrets = append(env.secrets, otherPassword)
	reached, release := gate.arm(nil)
	aDone, aResult := env.doAsync(logical.CreateOperation, "roles/ci", map[string]any{fieldEmail: testEmail, fieldPassword: testPassword})
	<-reached
	// B's create arrives while A checks its login, and is applied first.
	resp, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.CreateOperation, Path: "roles/ci",
		Storage: env.storage, Data: map[string]any{fieldEmail: otherEmail, fieldPassword: otherPassword, fieldVerify: false}})
	env.record(resp, err)
	if statusOf(resp, err) != 200 {
		t.Fatalf("B: %q", errorText(resp, err))
	}
	release()
	<-aDone
	if resp, err := aResult(); statusOf(resp, err) != 400 ||
		errorText(resp, err) != `role "ci" was created by another request meanwhile; nothing was stored. Send the write again to update it` {
		t.Fatalf("A: %d %q", statusOf(resp, err), errorText(resp, err))
	}
	if role, _ := getRole(context.Background(), env.storage, "ci"); role.Email != otherEmail {
		t.Fatalf("B's role was overwritten: %+v", redacted(role))
	}
	// A create that finds the role under the lock is refused the same way.
	resp, err = env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.CreateOperation, Path: "roles/ci",
		Storage: env.storage, Data: map[string]any{fieldTTL: "1m"}})
	env.record(resp, err)
	if statusOf(resp, err) != 400 || !strings.Contains(errorText(resp, err), "was created by another request") {
		t.Fatalf("create of an existing role: %d %q", statusOf(resp, err), errorText(resp, err))
	}
}

// redacted prints a role without its password.
func redacted(role *roleEntry) any {
	if role == nil {
		return nil
	}
	r := *role
	r.Password = fmt.Sprintf("<%d bytes>", len(r.Password))
	return r
}

// A server that answers every page of the project list with one project
// named by ~1 MiB cannot make a role write read (and hold) a gigabyte: the
// verify stops at the listing bound with a 400 naming it.
func TestRoleVerifyHugeProjectListing(t *testing.T) {
	env := newTestBackend(t)
	var pages atomic.Int64
	name := strings.Repeat("n", mkclient.MaxBodyBytes-1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/projects" {
			env.mk.Handler().ServeHTTP(w, r)
			return
		}
		skip, _ := strconv.Atoi(r.URL.Query().Get("$skip"))
		pages.Add(1)
		_, _ = fmt.Fprintf(w, `{"total":1000,"limit":1,"skip":%d,"data":[{"id":%d,"name":%q}]}`, skip, skip, name)
	}))
	defer srv.Close()
	env.mustWrite("config", map[string]any{fieldBaseURL: srv.URL})

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	resp, err := env.do(logical.UpdateOperation, "roles/ci", map[string]any{
		fieldEmail: testEmail, fieldPassword: testPassword, fieldProjects: "DEMO_PROJECT"})
	runtime.ReadMemStats(&after)
	if msg := errorText(resp, err); statusOf(resp, err) != 400 || !strings.Contains(msg, "larger than the 8 MiB") {
		t.Fatalf("status %d: %.300s", statusOf(resp, err), msg)
	}
	if n := pages.Load(); n > 10 {
		t.Fatalf("the verify read %d pages of ~1 MiB", n)
	}
	// Server and client together allocate a few MiB per page.
	if mib := (after.TotalAlloc - before.TotalAlloc) >> 20; mib > 256 {
		t.Fatalf("the verify allocated %d MiB", mib)
	}
}

// The role read shows what the engine knows of the role now, and when the
// stored login last changed; never a password or a token value (the
// test's leak check scans every read).
func TestRoleStatus(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldReuseTokens: true})
	created := env.clock.Now().Format(time.RFC3339)

	env.clock.Advance(time.Minute)
	creds := env.mustRead("creds/ci").Data
	got := env.mustRead("roles/ci").Data
	if got[fieldLastLoginAt] != env.clock.Now().Format(time.RFC3339) || got[fieldSharedTokenID] != creds[fieldTokenID] ||
		got[fieldSharedTokenExpiresAt] != creds[fieldExpiresAt] || got[fieldLastError] != "" || got[fieldLoginRefusedUntil] != "" {
		t.Errorf("after a read the role reads %#v", got)
	}

	// A write that keeps the password keeps password_updated_at; one that
	// changes the login without verifying clears verified_at.
	env.clock.Advance(time.Minute)
	env.mustWrite("roles/ci", map[string]any{fieldTTL: "10m"})
	got = env.mustRead("roles/ci").Data
	if got[fieldUpdatedAt] != env.clock.Now().Format(time.RFC3339) || got[fieldPasswordUpdatedAt] != created || got[fieldVerifiedAt] != created {
		t.Errorf("after a ttl write: updated_at %v password_updated_at %v verified_at %v", got[fieldUpdatedAt], got[fieldPasswordUpdatedAt], got[fieldVerifiedAt])
	}
	// The write dropped the runtime state with the shared token.
	if got[fieldLastLoginAt] != "" || got[fieldSharedTokenID] != "" {
		t.Errorf("runtime state survived the write: %#v", got)
	}
	env.mustWrite("roles/ci", map[string]any{fieldPassword: "not-the-password", fieldVerify: false})
	env.secrets = append(env.secrets, "not-the-password")
	got = env.mustRead("roles/ci").Data
	if got[fieldPasswordUpdatedAt] != env.clock.Now().Format(time.RFC3339) || got[fieldVerifiedAt] != "" {
		t.Errorf("after an unverified password write: password_updated_at %v verified_at %v", got[fieldPasswordUpdatedAt], got[fieldVerifiedAt])
	}

	resp, err := env.do(logical.ReadOperation, "creds/ci", nil)
	got = env.mustRead("roles/ci").Data
	until := env.clock.Now().Add(defaultRejectedLoginBackoff).Format(time.RFC3339)
	if !strings.HasPrefix(errorText(resp, err), got[fieldLastError].(string)) || got[fieldLastError] == "" ||
		got[fieldLastErrorAt] != env.clock.Now().Format(time.RFC3339) || got[fieldLoginRefusedUntil] != until {
		t.Errorf("after a rejected read (%q) the role reads %#v", errorText(resp, err), got)
	}
	// The memory ends on time.
	env.clock.Advance(defaultRejectedLoginBackoff)
	if got := env.mustRead("roles/ci").Data[fieldLoginRefusedUntil]; got != "" {
		t.Errorf("login_refused_until %v after the backoff", got)
	}
}

// A role write names every problem at once, in the order the docs give:
// the name, unknown fields, then the fields in schema order.
func TestRoleWriteNamesEveryProblemInOrder(t *testing.T) {
	env := newTestBackend(t)
	resp, err := env.do(logical.UpdateOperation, "roles/bad name", map[string]any{
		"passwort": "x", fieldEmail: "not an address", fieldPassword: "", fieldTTL: "2h", fieldMaxTTL: "1h",
		fieldReuseMinRemaining: "21h", fieldDescription: strings.Repeat("d", maxDescriptionLen+1), fieldProjects: "A,,B",
	})
	msg := errorText(resp, err)
	want := []string{"name: ", "passwort: unknown field", "email: ", "password: ", "ttl: 2h must not exceed max_ttl 1h", "reuse_min_remaining: ", "description: ", "projects: "}
	at := 0
	for _, w := range want {
		i := strings.Index(msg[at:], w)
		if i < 0 {
			t.Fatalf("%q missing or out of order in %q", w, msg)
		}
		at += i + len(w)
	}
}

// A plain LIST reads no role; a detailed page reads the roles of the page
// alone, a bounded amount each however large the roles are, and none that
// a creds read has cached. Pages follow each other with after.
func TestRoleListPages(t *testing.T) {
	env := newTestBackend(t)
	fat := func(i int) *roleEntry {
		r := &roleEntry{Email: fmt.Sprintf("user-%d@example.com", i), Password: testPassword,
			Description: strings.Repeat("é", maxDescriptionLen/2), ReuseMinRemaining: time.Hour}
		for p := range maxProjects {
			r.Projects = append(r.Projects, fmt.Sprintf("%03d-", p)+strings.Repeat("p", maxProjectNameLen-4))
		}
		return r
	}
	const roles = 1000
	for i := range roles {
		if err := putRole(context.Background(), env.storage, fmt.Sprintf("fat-%04d", i), fat(i)); err != nil {
			t.Fatal(err)
		}
	}
	env.createRole("ci", nil)
	env.mustRead("creds/ci")
	env.mustWrite("roles/fat-0001", map[string]any{fieldDescription: "rewritten", fieldVerify: false})
	counting := &countingStorage{Storage: env.storage}
	env.reqStorage = counting

	resp, err := env.do(logical.ListOperation, "roles/", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Past one page, a plain LIST answers the names alone, and says how to
	// see the rest.
	if n := len(resp.Data["keys"].([]string)); n != roles+1 || len(counting.gets) != 0 || resp.Data["key_info"] != nil ||
		len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "a page at a time") {
		t.Fatalf("plain LIST: %d keys, %d storage reads, key_info %v, warnings %q", n, len(counting.gets), resp.Data["key_info"] != nil, resp.Warnings)
	}

	const limit = 300
	var seen []string
	after := ""
	for page := 0; ; page++ {
		counting.gets = nil
		resp, err := env.do(logical.ListOperation, "roles/", map[string]any{fieldAfter: after, fieldLimit: limit})
		if err != nil {
			t.Fatal(err)
		}
		keys, _ := resp.Data["keys"].([]string)
		if len(keys) == 0 {
			break
		}
		info := resp.Data["key_info"].(map[string]any)
		if len(keys) > limit || len(info) != len(keys) || len(counting.gets) > len(keys) {
			t.Fatalf("page %d: %d keys, %d key_info, %d storage reads", page, len(keys), len(info), len(counting.gets))
		}
		body, _ := json.Marshal(resp.Data)
		if len(body) > 1500*limit {
			t.Fatalf("a page of %d fat roles answered %d bytes", limit, len(body))
		}
		if page == 0 {
			t.Logf("a page of %d roles of %d projects: %d bytes", limit, maxProjects, len(body))
			got := info["fat-0007"].(map[string]any)
			if got[fieldProjectCount] != maxProjects || got[fieldEmail] != "user-7@example.com" ||
				got[fieldDescription] != strings.Repeat("é", maxListedDescription)+"…" {
				t.Fatalf("key_info = %v", got)
			}
			if got := info["fat-0001"].(map[string]any)[fieldDescription]; got != "rewritten" {
				t.Fatalf("a rewritten role lists %q", got)
			}
		}
		if _, ok := info["ci"]; ok && counting.gets["roles/ci"] != 0 {
			t.Fatalf("a role a creds read cached was read from storage")
		}
		seen = append(seen, keys...)
		after = keys[len(keys)-1]
	}
	if len(seen) != roles+1 || !slices.IsSorted(seen) || len(slices.Compact(slices.Clone(seen))) != roles+1 {
		t.Fatalf("pages gave %d roles (sorted %v), want each of %d once", len(seen), slices.IsSorted(seen), roles+1)
	}

	for _, bad := range []any{-1, maxListPage + 1} {
		resp, err := env.do(logical.ListOperation, "roles/", map[string]any{fieldLimit: bad})
		if statusOf(resp, err) != 400 || !strings.Contains(resp.Error().Error(), fieldLimit) {
			t.Errorf("limit=%v: %d %v", bad, statusOf(resp, err), resp)
		}
	}
}

// countingStorage counts the Gets of each key.
type countingStorage struct {
	logical.Storage
	mu   sync.Mutex
	gets map[string]int
}

func (c *countingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	c.mu.Lock()
	if c.gets == nil {
		c.gets = map[string]int{}
	}
	c.gets[key]++
	c.mu.Unlock()
	return c.Storage.Get(ctx, key)
}

// Every bidirectional control, the line and paragraph separators and the
// format characters (zero-width, tag, soft hyphen, BOM) are refused in
// each text field, with the rune and its place; nothing is stored.
func TestRoleTextRefusesFormatAndBidiCharacters(t *testing.T) {
	env := newTestBackend(t)
	env.createRole("ci", map[string]any{fieldDescription: "kept"})
	for _, r := range []rune{'\u061c', '\u200e', '\u200f', '\u202a', '\u202e', '\u2066', '\u2069', '\u2028', '\u2029',
		'\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u00ad', '\U000e0041', '\U000e007f',
		// Shown as nothing, or as the font likes: Hangul fillers, the
		// combining grapheme joiner, variation selectors, noncharacters,
		// private use.
		'\u3164', '\u115f', '\u1160', '\uffa0', '\u034f', '\ufe0f', '\U000e0100', '\ufffe', '\uffff', '\ufdd0', '\ue000', '\U000f0000'} {
		for _, tt := range []struct {
			field, value, prefix string
		}{
			// Inside the value: U+2028 and U+2029 are also space, which
			// trimming would take off the ends.
			{fieldDescription, "a" + string(r) + "b", "description: "},
			{fieldEmail, "c" + string(r) + "i@example.com", "email: "},
			{fieldProjects, "CI_PROJECT,a" + string(r) + "b", "projects: entry 2 "},
		} {
			resp, err := env.do(logical.UpdateOperation, "roles/ci", map[string]any{tt.field: tt.value})
			want := fmt.Sprintf("%smust not contain control, format or bidirectional characters or line separators (U+%04X at byte 1)", tt.prefix, r)
			if statusOf(resp, err) != 400 || errorText(resp, err) != want {
				t.Errorf("%s with U+%04X: %d %q, want %q", tt.field, r, statusOf(resp, err), errorText(resp, err), want)
			}
		}
	}
	if got := env.mustRead("roles/ci").Data; got[fieldDescription] != "kept" || got[fieldEmail] != testEmail {
		t.Fatalf("a refused write changed the role: %v", got)
	}
	// A no-break space shows as a space: a description may hold one.
	if resp, err := env.do(logical.UpdateOperation, "roles/ci", map[string]any{fieldDescription: "CI\u00a0runner"}); statusOf(resp, err) != 200 {
		t.Fatalf("description with U+00A0: %d %q", statusOf(resp, err), errorText(resp, err))
	}
}

//go:build e2e

package e2e

import (
	"encoding/json"

	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/portpair"
)

// TestObserveRoles is the on-call view through the real CLI and HTTP API:
// LIST and its detailed pages, the role status, verify-role, and the
// metrics scraped with a policy-limited token and parsed by Prometheus's
// own parser, with the exact counts the issue names: over all roles, and
// per role for the one metrics_roles names.
func TestObserveRoles(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.MustCLI("write", mount+"/config", "metrics_roles=team-a-*")
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword, "reuse_tokens=true", "description=shared CI token")
	s.MustCLI("write", mount+"/roles/team-b-ci", "email="+teamBEmail, "password=not-the-password", "verify=false")
	s.addSecret("not-the-password")

	// A plain LIST answers the names alone; details come a page at a time.
	list := s.MustCLI("list", mount+"/roles")
	if !strings.Contains(list, "team-a-ci") || !strings.Contains(list, "team-b-ci") || strings.Contains(list, teamAEmail) {
		t.Errorf("list:\n%s", list)
	}
	keys, info := listPage(t, s, "", 1)
	if len(keys) != 1 || keys[0] != "team-a-ci" || info["team-a-ci"]["email"] != teamAEmail ||
		info["team-a-ci"]["description"] != "shared CI token" || info["team-a-ci"]["reuse_tokens"] != true || info["team-a-ci"]["project_count"] != 0.0 {
		t.Errorf("first page: %v %v", keys, info)
	}
	if keys, info = listPage(t, s, "team-a-ci", 1); len(keys) != 1 || keys[0] != "team-b-ci" || info["team-b-ci"]["email"] != teamBEmail {
		t.Errorf("second page: %v %v", keys, info)
	}
	if keys, _ = listPage(t, s, "team-b-ci", 1); len(keys) != 0 {
		t.Errorf("past the last page: %v", keys)
	}
	if s.Platform.OpenBao {
		out := s.MustCLI("list", "-detailed", "-limit=1", "-after=team-a-ci", mount+"/roles")
		if !strings.Contains(out, teamBEmail) || strings.Contains(out, teamAEmail) {
			t.Errorf("bao list -detailed -limit=1 -after=team-a-ci:\n%s", out)
		}
	}

	var expiresAt string
	for range 5 {
		expiresAt = fields(s.MustCLI("read", mount+"/creds/team-a-ci"))["expires_at"]
	}
	for range 3 {
		if _, errOut, err := s.CLI("read", mount+"/creds/team-b-ci"); err == nil || !strings.Contains(errOut, "rejected the login") {
			t.Fatalf("a wrong password read: %v\n%s", err, errOut)
		}
	}

	role := fields(s.MustCLI("read", mount+"/roles/team-a-ci"))
	for _, f := range []string{"last_login_at", "shared_token_id", "updated_at", "password_updated_at", "verified_at"} {
		if role[f] == "" {
			t.Errorf("role read: %s is empty\n%v", f, role)
		}
	}
	if role["shared_token_expires_at"] != expiresAt {
		t.Errorf("shared_token_expires_at %q, want the token's %q", role["shared_token_expires_at"], expiresAt)
	}
	wrong := fields(s.MustCLI("read", mount+"/roles/team-b-ci"))
	if !strings.Contains(wrong["last_error"], "rejected the login") || wrong["login_refused_until"] == "" {
		t.Errorf("the rejected role reads %v", wrong)
	}

	verified := fields(s.MustCLI("write", "-f", mount+"/verify-role/team-a-ci"))
	if verified["verified"] != "true" || verified["user_id"] != "11" || verified["verified_at"] == "" {
		t.Errorf("verify-role: %v", verified)
	}

	s.MustCLI("policy", "write", "metrics", filepath.Join(repoRoot(t), "bootstrap", "policies", "metrics.hcl"))
	token := strings.TrimSpace(s.MustCLI("token", "create", "-policy=metrics", "-field=token"))
	m := scrape(t, s.Addr, token)
	m.expect(t, 1, "metakraftwerk_creds_issued_total", "source=login")
	m.expect(t, 4, "metakraftwerk_creds_issued_total", "source=shared")
	m.expect(t, 1, "metakraftwerk_logins_total", "purpose=creds", "outcome=rejected")
	m.expect(t, 2, "metakraftwerk_creds_refused_total")
	m.expect(t, 2, "metakraftwerk_logins_total", "purpose=verify", "outcome=success")
	m.expect(t, 1, "metakraftwerk_build_info", "version="+s.Version)
	m.expect(t, 1, "metakraftwerk_roles", "state=refused")
	m.expect(t, 1, "metakraftwerk_roles", "state=shared_token_held")
	// The named role's own series, the same counts.
	m.expect(t, 1, "metakraftwerk_role_creds_issued_total", "role=team-a-ci", "source=login")
	m.expect(t, 4, "metakraftwerk_role_creds_issued_total", "role=team-a-ci", "source=shared")
	m.expect(t, 2, "metakraftwerk_role_logins_total", "role=team-a-ci", "purpose=verify", "outcome=success")
	for _, g := range []struct {
		name   string
		labels []string
	}{
		{"metakraftwerk_shared_token_soonest_expiry_timestamp_seconds", nil},
		{"metakraftwerk_role_shared_token_expiry_timestamp_seconds", []string{"role=team-a-ci"}},
	} {
		if v, ok := m.value(g.name, g.labels...); !ok || time.Unix(int64(v), 0).UTC().Format(time.RFC3339) != expiresAt {
			t.Errorf("%s%v = %v (present %v), want %s", g.name, g.labels, v, ok, expiresAt)
		}
	}
	// The role metrics_roles does not name has no series of its own.
	if roles := m.labelledRoles(); len(roles) != 1 || roles[0] != "team-a-ci" {
		t.Errorf("roles with series of their own: %v, want team-a-ci alone", roles)
	}

	// The metrics token reads nothing else, and a token without the policy
	// cannot scrape.
	if _, errOut, err := s.CLIAs(token, "read", mount+"/roles/team-a-ci"); err == nil || !strings.Contains(errOut, "Code: 403") {
		t.Errorf("the metrics token reads a role: %v %s", err, errOut)
	}
	other := strings.TrimSpace(s.MustCLI("token", "create", "-policy=default", "-field=token"))
	if code, _, _ := get(t, s.Addr+"/v1/"+mount+"/metrics", other); code != http.StatusForbidden {
		t.Errorf("scrape with the default policy: HTTP %d, want 403", code)
	}

	// A deleted role leaves the counts by state.
	s.MustCLI("delete", mount+"/roles/team-b-ci")
	scrape(t, s.Addr, token).expect(t, 0, "metakraftwerk_roles", "state=refused")

	promBin := requiredEnv(t, "PROMETHEUS_BIN")
	prometheusSeesCounter(t, s, promBin, token)
}

// prometheusSeesCounter runs a real Prometheus with the scrape job of
// bootstrap/prometheus/prometheus.yml and asks its query API for the
// counter the stack produced.
func prometheusSeesCounter(t *testing.T, s *Stack, bin, token string) {
	dir := filepath.Join(s.Dir, "prometheus")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "vault-metrics-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(repoRoot(t), "bootstrap", "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	target := strings.TrimPrefix(s.Addr, "http://")
	cfg := strings.NewReplacer(
		"scrape_interval: 30s", "scrape_interval: 1s",
		"scheme: https", "scheme: http",
		"/etc/prometheus/vault-metrics-token", tokenFile,
		"vault.example.com:8200", target,
	).Replace(string(example))
	if cfg == string(example) {
		t.Fatal("the example scrape config did not take the test's target")
	}
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	alerts, err := os.ReadFile(filepath.Join(repoRoot(t), "bootstrap", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), alerts, 0o600); err != nil {
		t.Fatal(err)
	}
	port := portpair.Free(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logFile.Close()
	})

	query := `metakraftwerk_role_creds_issued_total{job="vault-metakraftwerk",role="team-a-ci",source="shared"}`
	waitForValue(t, addr, query, "4", logFile.Name())
	// The shipped alerts loaded: Prometheus refuses to start on a bad rule
	// file, and evaluates these against the engine's series.
	if code, body, err := get(t, "http://"+addr+"/api/v1/rules", ""); err != nil || code != http.StatusOK ||
		strings.Count(string(body), `"name":"MetaKraftwerk`) != 4 || strings.Contains(string(body), `"health":"err`) {
		t.Errorf("the shipped alerts: HTTP %d %v %s", code, err, body)
	}
	waitForValue(t, addr, `sum(metakraftwerk_creds_issued_total{job="vault-metakraftwerk"})`, "5", logFile.Name())

	// Prometheus reads the token file at every scrape: a token replaced in
	// the file (as Vault Agent's sink does when it renews or signs in
	// again) takes over from the next scrape, and the old one can go. The
	// new one is the periodic token docs/operations.md describes.
	rotated := strings.TrimSpace(s.MustCLI("token", "create", "-policy=metrics", "-period=24h", "-orphan", "-field=token"))
	if err := os.WriteFile(tokenFile+".new", []byte(rotated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tokenFile+".new", tokenFile); err != nil {
		t.Fatal(err)
	}
	s.MustCLI("token", "revoke", token)
	if err := s.readCredsOnce(s.API(s.Token), "team-a-ci"); err != nil {
		t.Fatal(err)
	}
	waitForValue(t, addr, query, "5", logFile.Name())
}

// waitForValue waits until Prometheus's query API answers query with want.
func waitForValue(t *testing.T, addr, query, want, logFile string) {
	t.Helper()
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		code, body, err := get(t, "http://"+addr+"/api/v1/query?query="+url.QueryEscape(query), "")
		if err == nil && code == http.StatusOK {
			var res struct {
				Data struct {
					Result []struct {
						Value [2]any `json:"value"`
					} `json:"result"`
				} `json:"data"`
			}
			if json.Unmarshal(body, &res) == nil && len(res.Data.Result) == 1 && res.Data.Result[0].Value[1] == want {
				return
			}
			last = string(body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	logs, _ := os.ReadFile(logFile)
	t.Fatalf("Prometheus never saw %s = %s; last answer %s\n%s", query, want, last, tail(string(logs), 20))
}

func get(t *testing.T, rawURL, token string) (int, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// scraped is one parsed scrape of <mount>/metrics.
type scraped map[string]*dto.MetricFamily

// scrape GETs the metrics through the server's HTTP API, checks the
// exposition content type and parses the body with Prometheus's parser.
func scrape(t *testing.T, addr, token string) scraped {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, addr+"/v1/"+mount+"/metrics", nil)
	req.Header.Set("X-Vault-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: HTTP %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("scrape content type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parsing the scrape: %v\n%s", err, body)
	}
	return fams
}

func (m scraped) value(name string, labels ...string) (float64, bool) {
	mf := m[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, metric := range mf.GetMetric() {
		if len(metric.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range metric.GetLabel() {
			found := false
			for _, want := range labels {
				found = found || want == l.GetName()+"="+l.GetValue()
			}
			if !found {
				continue next
			}
		}
		if c := metric.GetCounter(); c != nil {
			return c.GetValue(), true
		}
		return metric.GetGauge().GetValue(), true
	}
	return 0, false
}

// labelledRoles is every value of a role label in the scrape.
func (m scraped) labelledRoles() []string {
	seen := map[string]bool{}
	var out []string
	for _, mf := range m {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "role" && !seen[l.GetValue()] {
					seen[l.GetValue()] = true
					out = append(out, l.GetValue())
				}
			}
		}
	}
	return out
}

// listPage sends LIST <mount>/roles?limit=&after= over the HTTP API (Vault's
// CLI sends no parameters with a LIST) and answers keys and key_info.
func listPage(t *testing.T, s *Stack, after string, limit int) ([]string, map[string]map[string]any) {
	t.Helper()
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if after != "" {
		q.Set("after", after)
	}
	req, _ := http.NewRequest("LIST", s.Addr+"/v1/"+mount+"/roles?"+q.Encode(), nil)
	req.Header.Set("X-Vault-Token", s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound { // no keys after this one
		return nil, nil
	}
	var out struct {
		Data struct {
			Keys    []string                  `json:"keys"`
			KeyInfo map[string]map[string]any `json:"key_info"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil {
		t.Fatalf("LIST roles?%s: HTTP %d %s", q.Encode(), resp.StatusCode, body)
	}
	return out.Data.Keys, out.Data.KeyInfo
}

func (m scraped) expect(t *testing.T, want float64, name string, labels ...string) {
	t.Helper()
	if got, ok := m.value(name, labels...); !ok || got != want {
		t.Errorf("%s%v = %v (present %v), want %v", name, labels, got, ok, want)
	}
}

// TestAuditLogShowsTokenID is the runbook's correlation: with
// audit_non_hmac_response_keys=token_id on the mount, the audit log names
// each minted token's jti in clear while the token itself stays an HMAC.
func TestAuditLogShowsTokenID(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{})
	s.MustCLI("secrets", "tune", "-audit-non-hmac-response-keys=token_id", mount)
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)
	creds := fields(s.MustCLI("read", mount+"/creds/team-a-ci"))
	tokenID := creds["token_id"]
	if tokenID == "" {
		t.Fatal("the creds read has no token_id")
	}
	data, err := os.ReadFile(s.audit)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		var entry struct {
			Type    string `json:"type"`
			Request struct {
				Path string `json:"path"`
			} `json:"request"`
			Response struct {
				Data map[string]any `json:"data"`
			} `json:"response"`
		}
		if json.Unmarshal([]byte(line), &entry) != nil || entry.Type != "response" || entry.Request.Path != mount+"/creds/team-a-ci" {
			continue
		}
		found = true
		if got := entry.Response.Data["token_id"]; got != tokenID {
			t.Errorf("the audit log shows token_id %v, want %s in clear", got, tokenID)
		}
		if tok, _ := entry.Response.Data["access_token"].(string); !strings.HasPrefix(tok, "hmac-sha256:") {
			t.Errorf("the audit log shows access_token as %.20q…, want an HMAC", tok)
		}
	}
	if !found {
		t.Fatal("no audit entry for the creds read")
	}
}

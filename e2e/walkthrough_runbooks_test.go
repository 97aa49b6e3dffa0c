//go:build e2e

package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
)

// The walkthrough's runs of the docs' other marked blocks: the release's
// provenance, the policy check, the role status, the scrape token, every
// runbook of docs/operations.md from its symptom, the look at what
// MetaKraftwerk answers, and the uninstall.

// withEnv runs f with more of the operator's environment.
func (w *walk) withEnv(f func(), env ...string) {
	saved := w.env
	w.env = append(append([]string{}, saved...), env...)
	defer func() { w.env = saved }()
	f()
}

// docsStandIn is `make up`'s stand-in: the users of bootstrap/users.json,
// over plain HTTP on loopback. It returns each user's password by email.
func docsStandIn(t *testing.T, s *Stack) (*devserver.Running, map[string]string) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "bootstrap", "users.json"))
	if err != nil {
		t.Fatal(err)
	}
	var users []devserver.User
	if err := json.Unmarshal(data, &users); err != nil {
		t.Fatal(err)
	}
	passwords := map[string]string{}
	for _, u := range users {
		passwords[u.Email] = u.Password
		s.addSecret(u.Password)
	}
	mk, err := devserver.Listen("127.0.0.1:0", devserver.Config{Users: users, OnIssue: s.addSecret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mk.Close() })
	return mk, passwords
}

// provenance runs install.md's check of the provenance against a zip: the
// digest it names is the zip's, and the commit is a commit id.
func (w *walk) provenance() {
	w.t.Helper()
	out := w.run("provenance", w.blocks("docs/install.md")["provenance"], w.platform())
	lines := strings.Fields(out)
	var digests []string
	for _, f := range lines {
		if regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(f) {
			digests = append(digests, f)
		}
	}
	if len(digests) != 2 || digests[0] != digests[1] {
		w.t.Errorf("the provenance's digest of the zip and sha256sum's differ: %v", digests)
	}
	if !regexp.MustCompile(`(?m)^[0-9a-f]{40}$`).MatchString(out) {
		w.t.Errorf("the provenance names no commit:\n%s", out)
	}
}

// tryPolicy runs the README's check of the team-a policy: with a root
// token exported as both VAULT_TOKEN and BAO_TOKEN (as the walkthrough's
// shell has), the block's first read works and its second is refused,
// so the block ends with permission denied; run as root, it would pass.
func (w *walk) tryPolicy() {
	w.t.Helper()
	out := w.runFailing("try-policy", w.blocks("README.md")["try-policy"], w.vaultIsBao())
	if !strings.Contains(out, "access_token") || !strings.Contains(out, "permission denied") {
		w.t.Errorf("the try-policy block: want the creds read to work and the role read refused:\n%s", w.mask(out))
	}
}

// roleStatus runs operations.md's look at a role.
func (w *walk) roleStatus() {
	w.t.Helper()
	out := w.run("role-status", w.blocks("docs/operations.md")["role-status"], w.vaultIsBao())
	for _, want := range []string{walkEmail, "last_login_at", "verified"} {
		if !strings.Contains(out, want) {
			w.t.Errorf("the role-status block does not show %s:\n%s", want, w.mask(out))
		}
	}
}

// scrapeToken runs operations.md's periodic scrape token, with the token
// written into the work directory, and scrapes with it.
func (w *walk) scrapeToken() {
	w.t.Helper()
	copyFile(w.t, filepath.Join(repoRoot(w.t), "bootstrap", "policies", "metrics.hcl"), filepath.Join(w.work, "metrics.hcl"))
	tokenFile := filepath.Join(w.work, "vault-metrics-token")
	w.run("scrape-token", w.blocks("docs/operations.md")["scrape-token"],
		sub{"/etc/prometheus/vault-metrics-token", tokenFile}, w.vaultIsBao())
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		w.t.Fatal(err)
	}
	if code, body, err := get(w.t, w.s.Addr+"/v1/"+w.s.mount()+"/metrics", strings.TrimSpace(string(tok))); err != nil || code != http.StatusOK || !strings.Contains(string(body), "metakraftwerk_build_info") {
		w.t.Errorf("a scrape with the periodic token: %d %v", code, err)
	}
}

// auditTokenID runs operations.md's tune that puts token_id in clear
// into the audit log.
func (w *walk) auditTokenID() {
	w.t.Helper()
	w.run("audit-token-id", w.blocks("docs/operations.md")["audit-token-id"], w.vaultIsBao())
}

// leakedToken follows the leaked-token runbook from its symptom: a shared
// token is out. The password changes upstream (through the stand-in's
// documented endpoint, as an administrator would), the block runs with
// the new one in NEW; then no reader gets the leaked token, the leases
// are gone, and the leaked token still works upstream, as the runbook
// warns.
func (w *walk) leakedToken() {
	w.t.Helper()
	s := w.s
	first, err := s.ReadCreds(s.API(s.Token), "team-a-ci")
	if err != nil {
		w.t.Fatal(err)
	}
	leaked, _ := first.Data["access_token"].(string)
	if again, err := s.ReadCreds(s.API(s.Token), "team-a-ci"); err != nil || again.Data["access_token"] != leaked {
		w.t.Fatalf("team-a-ci does not share its token (reuse_tokens): %v", err)
	}
	const newPassword = "pw-CI-BOT-after-leak-77c2a9"
	w.setUpstreamPassword(newPassword)
	before := w.mk.Stats().Logins
	w.withEnv(func() {
		w.run("runbook-leaked-token", w.blocks("docs/operations.md")["runbook-leaked-token"], w.vaultIsBao())
	}, "ROLE=team-a-ci", "NEW="+newPassword)
	if got := w.mk.Stats().Logins - before; got != 1 {
		w.t.Errorf("the leaked-token runbook logged in %d times, want 1 (the write's verify)", got)
	}
	leases, _, _ := s.CLI("list", "sys/leases/lookup/"+s.mount()+"/creds/team-a-ci")
	if strings.TrimSpace(leases) != "" && !strings.Contains(leases, "No value found") {
		w.t.Errorf("leases are left after the runbook:\n%s", leases)
	}
	next, err := s.ReadCreds(s.API(s.Token), "team-a-ci")
	if err != nil || next.Data["access_token"] == leaked {
		w.t.Errorf("a read after the runbook: the leaked token again, or %v", err)
	}
	if code := w.tokenStatus(leaked); code != http.StatusOK {
		w.t.Errorf("the leaked token upstream after the runbook: %d; the runbook says it lives to its exp", code)
	}
}

// setUpstreamPassword changes the docs' user's password at the stand-in
// with development.md's documented request.
func (w *walk) setUpstreamPassword(password string) {
	w.t.Helper()
	w.s.addSecret(password)
	w.withEnv(func() {
		w.run("standin-password", w.blocks("docs/development.md")["standin-password"],
			sub{`"password": "a-new-password"`, `"password": "` + password + `"`},
			sub{"curl -fsS", "curl -fsS --cacert ca.pem"}) // the walkthrough's stand-in speaks TLS
	}, "METAKRAFTWERK_URL="+w.mk.URL)
}

// outage follows the outage runbook from its symptom: MetaKraftwerk fails
// every login, a reader gets a 502, the block shows why; when it is back,
// the next read works with nothing done in Vault.
func (w *walk) outage() {
	w.t.Helper()
	s := w.s
	s.MustCLI("write", "-f", s.mount()+"/rotate-role/team-a-ci") // no shared token to hide the outage
	w.mk.SetFaults(devserver.Faults{FailRate: 1, FailStatus: http.StatusBadGateway})
	if _, _, err := s.CLI("read", s.mount()+"/creds/team-a-ci"); err == nil {
		w.t.Fatal("a read during the outage worked")
	}
	var out string
	w.withEnv(func() {
		out = w.run("runbook-outage", w.blocks("docs/operations.md")["runbook-outage"], w.vaultIsBao())
	}, "ROLE=team-a-ci")
	if !strings.Contains(out, "MetaKraftwerk") {
		w.t.Errorf("the outage runbook's last_error does not say what failed: %q", out)
	}
	w.mk.SetFaults(devserver.Faults{})
	if _, err := s.ReadCreds(s.API(s.Token), "team-a-ci"); err != nil {
		w.t.Errorf("a read after MetaKraftwerk is back: %v", err)
	}
}

// auditRunbook finds, from a token alone, the read that handed it out.
func (w *walk) auditRunbook(leaked string) {
	w.t.Helper()
	var out string
	w.withEnv(func() {
		out = w.run("runbook-audit", w.blocks("docs/operations.md")["runbook-audit"],
			sub{"/var/log/vault/audit.log", w.s.audit})
	}, "LEAKED="+leaked)
	if !strings.Contains(out, `"path":"`+w.s.mount()+`/creds/team-a-ci"`) {
		w.t.Errorf("the audit runbook did not find the read that handed the token out:\n%s", w.mask(out))
	}
}

// askUpstream runs troubleshooting.md's direct login at MetaKraftwerk,
// with the role's login in login.json, as the page says.
func (w *walk) askUpstream(password string) {
	w.t.Helper()
	login, _ := json.Marshal(map[string]string{"email": walkEmail, "password": password, "strategy": "local"})
	if err := os.WriteFile(filepath.Join(w.work, "login.json"), login, 0o600); err != nil {
		w.t.Fatal(err)
	}
	out := w.run("ask-upstream", w.blocks("docs/troubleshooting.md")["ask-upstream"],
		sub{"https://<base_url host>", w.mk.URL})
	if !strings.Contains(out, " 201") || !strings.Contains(out, "accessToken") {
		w.t.Errorf("the direct login did not show MetaKraftwerk's answer:\n%s", w.mask(out))
	}
	_ = os.Remove(filepath.Join(w.work, "login.json"))
}

// uninstall runs install.md's uninstall: the mount and the version are
// gone.
func (w *walk) uninstall(version string) {
	w.t.Helper()
	w.withEnv(func() {
		w.run("uninstall", w.blocks("docs/install.md")["uninstall"], w.vaultIsBao())
	}, "V="+version, "PLUGIN_DIR="+w.s.PluginDir)
	if out, _, _ := w.s.CLI("secrets", "list"); strings.Contains(out, w.s.mount()+"/") {
		w.t.Errorf("the mount is still there after the uninstall:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(w.s.PluginDir, "vault-plugin-secrets-metakraftwerk-v"+version)); err == nil {
		w.t.Error("the binary is still in the plugin directory after the uninstall")
	}
}

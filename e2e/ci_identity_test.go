//go:build e2e

package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	vaultapi "github.com/hashicorp/vault/api"
)

// ciMount is where the CI identity tests mount the engine: not the default.
const ciMount = "mk-ci"

// oidcIssuer is a CI service's OIDC issuer on loopback: a discovery
// document and a JWKS, and ID tokens signed with its RS256 key.
type oidcIssuer struct {
	URL string
	key *rsa.PrivateKey
}

const oidcKeyID = "ci-key-1"

func newOIDCIssuer(t *testing.T) *oidcIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := &oidcIssuer{key: key}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	iss.URL = srv.URL
	answer := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	b64 := base64.RawURLEncoding.EncodeToString
	mux.Handle("/.well-known/openid-configuration", answer(map[string]any{
		"issuer":                                iss.URL,
		"jwks_uri":                              iss.URL + "/.well-known/jwks",
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	}))
	mux.Handle("/.well-known/jwks", answer(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": oidcKeyID,
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}}))
	return iss
}

// idToken signs claims, with iss, iat, nbf and a 5-minute exp unless
// claims set them.
func (i *oidcIssuer) idToken(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	now := time.Now()
	full := jwt.MapClaims{"iss": i.URL, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": rand.Text()}
	for k, v := range claims {
		full[k] = v
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, full)
	tok.Header["kid"] = oidcKeyID
	signed, err := tok.SignedString(i.key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// with returns claims with the changes applied; a nil value removes one.
func with(claims jwt.MapClaims, changes jwt.MapClaims) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range claims {
		out[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// ciStack is the README's set-up at a non-default mount: team A's and team
// B's roles, and their policies written at the mount as the files' note
// says; with an operator's shell for the docs' blocks.
func ciStack(t *testing.T) (*Stack, *walk) {
	s := NewStack(t, StackOptions{Mount: ciMount})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)
	s.CreateRole("team-b-ci", teamBEmail, teamBPassword)
	sh := newShell(t, s, t.TempDir())
	sh.policyByNote("team-a")
	sh.policyByNote("team-b")
	return s, sh
}

// ciLogin logs in at auth/<path> with an ID token, as a job does.
func ciLogin(s *Stack, path, idToken string) (string, error) {
	sec, err := s.API("").Logical().Write("auth/"+path+"/login", map[string]any{"role": "team-a-ci", "jwt": idToken})
	if err != nil {
		return "", err
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return "", errors.New("no token in the login answer")
	}
	return sec.Auth.ClientToken, nil
}

// expectCIAccess checks what a job's Vault token may do: mint its team's
// token, and not team B's.
func expectCIAccess(t *testing.T, s *Stack, vaultToken string) {
	t.Helper()
	if err := s.readCredsOnce(s.API(vaultToken), "team-a-ci"); err != nil {
		t.Errorf("the matching job cannot read creds/team-a-ci: %v", err)
	}
	var re *vaultapi.ResponseError
	if _, err := s.ReadCreds(s.API(vaultToken), "team-b-ci"); !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
		t.Errorf("the matching job reading team B's creds: want 403, got %v", err)
	}
}

// expectRefused checks that each ID token is refused a Vault token.
func expectRefused(t *testing.T, s *Stack, path string, refused map[string]string) {
	t.Helper()
	for why, idToken := range refused {
		tok, err := ciLogin(s, path, idToken)
		var re *vaultapi.ResponseError
		switch {
		case err == nil:
			t.Errorf("%s: logged in (token of %d bytes)", why, len(tok))
		case !errors.As(err, &re) || (re.StatusCode != http.StatusBadRequest && re.StatusCode != http.StatusForbidden):
			t.Errorf("%s: want a 400 or 403, got %v", why, err)
		}
	}
}

// TestCIIdentityGitHub runs docs/ci.md's GitHub Actions set-up as written
// (the issuer is the local one) and logs in with ID tokens shaped like
// GitHub's: the matching job gets team A's creds and not team B's; a
// fork, another repository, a feature branch, another environment, a
// wrong audience and an expired token are refused, and so is each way
// around a looser binding (issue 34): a protected release branch, a
// protected tag, the repository created again under its name, a
// pull_request_target job on main with environment production, another
// workflow, and GitHub's default audience.
func TestCIIdentityGitHub(t *testing.T) {
	t.Parallel()
	s, sh := ciStack(t)
	iss := newOIDCIssuer(t)
	block := sh.blocks("docs/ci.md")["ci-github-vault"]
	sh.run("ci-github-vault", block, sub{"ISSUER=https://token.actions.githubusercontent.com", "ISSUER=" + iss.URL}, sh.vaultIsBao())

	job := jwt.MapClaims{
		"aud":                 "https://vault.example.com",
		"sub":                 "repo:acme/team-a-app:environment:production",
		"repository":          "acme/team-a-app",
		"repository_id":       "123456789",
		"repository_owner":    "acme",
		"repository_owner_id": "987654",
		"ref":                 "refs/heads/main",
		"ref_type":            "branch",
		"event_name":          "push",
		"workflow_ref":        "acme/team-a-app/.github/workflows/deploy.yml@refs/heads/main",
		"job_workflow_ref":    "acme/team-a-app/.github/workflows/deploy.yml@refs/heads/main",
		"environment":         "production",
	}
	tok, err := ciLogin(s, "github-actions", iss.idToken(t, job))
	if err != nil {
		t.Fatalf("the matching job cannot log in: %v", err)
	}
	expectCIAccess(t, s, tok)
	githubCurl(t, s, sh, iss, job)

	long := time.Now().Add(-time.Hour)
	expectRefused(t, s, "github-actions", map[string]string{
		"a fork":               iss.idToken(t, with(job, jwt.MapClaims{"repository": "mallory/team-a-app", "repository_owner": "mallory", "sub": "repo:mallory/team-a-app:environment:production"})),
		"team B's repository":  iss.idToken(t, with(job, jwt.MapClaims{"repository": "acme/team-b-app", "sub": "repo:acme/team-b-app:environment:production"})),
		"a feature branch":     iss.idToken(t, with(job, jwt.MapClaims{"ref": "refs/heads/feature", "sub": "repo:acme/team-a-app:ref:refs/heads/feature", "environment": nil})),
		"another environment":  iss.idToken(t, with(job, jwt.MapClaims{"environment": "staging", "sub": "repo:acme/team-a-app:environment:staging"})),
		"a wrong audience":     iss.idToken(t, with(job, jwt.MapClaims{"aud": "https://github.com/other"})),
		"an expired token":     iss.idToken(t, with(job, jwt.MapClaims{"iat": long.Add(-time.Hour).Unix(), "nbf": long.Add(-time.Hour).Unix(), "exp": long.Unix()})),
		"another issuer's key": newOIDCIssuer(t).idToken(t, with(job, jwt.MapClaims{"iss": iss.URL})),

		"a protected release/2.0 branch": iss.idToken(t, with(job, jwt.MapClaims{"ref": "refs/heads/release/2.0",
			"workflow_ref": "acme/team-a-app/.github/workflows/deploy.yml@refs/heads/release/2.0", "job_workflow_ref": "acme/team-a-app/.github/workflows/deploy.yml@refs/heads/release/2.0"})),
		"a protected tag": iss.idToken(t, with(job, jwt.MapClaims{"ref": "refs/tags/v2.0", "ref_type": "tag",
			"workflow_ref": "acme/team-a-app/.github/workflows/deploy.yml@refs/tags/v2.0", "job_workflow_ref": "acme/team-a-app/.github/workflows/deploy.yml@refs/tags/v2.0"})),
		"the repository created again under its name":                   iss.idToken(t, with(job, jwt.MapClaims{"repository_id": "123456790"})),
		"the owner created again under its name":                        iss.idToken(t, with(job, jwt.MapClaims{"repository_id": "123456791", "repository_owner_id": "987655"})),
		"a pull_request_target job on main with environment production": iss.idToken(t, with(job, jwt.MapClaims{"event_name": "pull_request_target"})),
		"another workflow of the repository": iss.idToken(t, with(job, jwt.MapClaims{
			"workflow_ref": "acme/team-a-app/.github/workflows/lint.yml@refs/heads/main", "job_workflow_ref": "acme/team-a-app/.github/workflows/lint.yml@refs/heads/main"})),
		"GitHub's default audience": iss.idToken(t, with(job, jwt.MapClaims{"aud": "https://github.com/acme"})),
	})
}

// TestCIIdentityGitLab runs docs/ci.md's GitLab set-up and the job's two
// script lines as written, with an ID token shaped like GitLab's in
// VAULT_ID_TOKEN: the job ends with a working MetaKraftwerk token; team B's
// creds are refused to it; an unprotected ref, another project, a wrong
// audience and an expired token get no Vault token, nor do the ways around
// binding ref_protected alone (issue 34): a protected release branch, a
// protected tag, and the project created again under its path.
func TestCIIdentityGitLab(t *testing.T) {
	t.Parallel()
	s, sh := ciStack(t)
	iss := newOIDCIssuer(t)
	docs := sh.blocks("docs/ci.md")
	sh.run("ci-gitlab-vault", docs["ci-gitlab-vault"], sub{"ISSUER=https://gitlab.example.com", "ISSUER=" + iss.URL}, sh.vaultIsBao())

	job := jwt.MapClaims{
		"aud":            "https://vault.example.com",
		"sub":            "project_path:acme/team-a-app:ref_type:branch:ref:main",
		"namespace_path": "acme",
		"project_path":   "acme/team-a-app",
		"project_id":     "4242",
		"ref":            "main",
		"ref_type":       "branch",
		"ref_protected":  "true",
	}
	sh.env = []string{"VAULT_ID_TOKEN=" + iss.idToken(t, job)}
	sh.run("ci-gitlab-job", docs["ci-gitlab-job"]+"printf %s \"$METAKRAFTWERK_TOKEN\" >gitlab-job.token\nprintf %s \"$VAULT_TOKEN\" >gitlab-job.vault-token\n", sh.vaultIsBao())
	sh.env = nil
	mkToken, err := os.ReadFile(filepath.Join(sh.work, "gitlab-job.token"))
	if err != nil || !jwtRe.Match(mkToken) {
		t.Fatalf("the job has no MetaKraftwerk token (%d bytes, %v)", len(mkToken), err)
	}
	if code := useToken(t, s.MK.URL, string(mkToken)); code != http.StatusOK {
		t.Fatalf("MetaKraftwerk answers the job's token with %d", code)
	}
	vaultToken, _ := os.ReadFile(filepath.Join(sh.work, "gitlab-job.vault-token"))
	if tok := strings.TrimSpace(string(vaultToken)); tok == "" || tok == s.Token {
		t.Fatal("the job did not read with the Vault token its login gave")
	} else {
		expectCIAccess(t, s, tok)
	}

	long := time.Now().Add(-time.Hour)
	expectRefused(t, s, "gitlab", map[string]string{
		"an unprotected branch": iss.idToken(t, with(job, jwt.MapClaims{"ref": "feature", "ref_protected": "false", "sub": "project_path:acme/team-a-app:ref_type:branch:ref:feature"})),
		"another project":       iss.idToken(t, with(job, jwt.MapClaims{"project_path": "acme/team-b-app", "sub": "project_path:acme/team-b-app:ref_type:branch:ref:main"})),
		"a fork":                iss.idToken(t, with(job, jwt.MapClaims{"project_path": "mallory/team-a-app", "namespace_path": "mallory", "sub": "project_path:mallory/team-a-app:ref_type:branch:ref:main"})),
		"a wrong audience":      iss.idToken(t, with(job, jwt.MapClaims{"aud": "https://gitlab.example.com"})),
		"an expired token":      iss.idToken(t, with(job, jwt.MapClaims{"iat": long.Add(-time.Hour).Unix(), "nbf": long.Add(-time.Hour).Unix(), "exp": long.Unix()})),

		"a protected release/2.0 branch":           iss.idToken(t, with(job, jwt.MapClaims{"ref": "release/2.0", "sub": "project_path:acme/team-a-app:ref_type:branch:ref:release/2.0"})),
		"a protected tag":                          iss.idToken(t, with(job, jwt.MapClaims{"ref": "v2.0", "ref_type": "tag", "sub": "project_path:acme/team-a-app:ref_type:tag:ref:v2.0"})),
		"the project created again under its path": iss.idToken(t, with(job, jwt.MapClaims{"project_id": "4243"})),
	})
}

// githubCurl runs ci.md's curl variant as written, with a loopback stand-in
// for the runner's ID token request URL: the matching job ends with a
// working MetaKraftwerk token; when the runner gives no ID token, or the
// creds path is wrong (the engine is not at MOUNT), the step fails at that
// command, and what follows it (the deploy) never runs.
func githubCurl(t *testing.T, s *Stack, sh *walk, iss *oidcIssuer, job map[string]any) {
	t.Helper()
	const requestToken = "runner-request-token-3f9c"
	var noToken atomic.Bool
	runner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "bearer "+requestToken || r.URL.Query().Get("audience") != "https://vault.example.com" {
			http.Error(w, "bad request token or audience", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if noToken.Load() {
			_, _ = w.Write([]byte(`{"count":0}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"value": iss.idToken(t, job)})
	}))
	defer runner.Close()
	block := sh.blocks("docs/ci.md")["ci-github-curl"]
	deploy := "\nprintf %s \"$METAKRAFTWERK_TOKEN\" >github-curl.token\n"
	env := []string{"ACTIONS_ID_TOKEN_REQUEST_TOKEN=" + requestToken, "ACTIONS_ID_TOKEN_REQUEST_URL=" + runner.URL + "/idtoken?api-version=2.0"}
	tokenFile := filepath.Join(sh.work, "github-curl.token")

	sh.withEnv(func() { sh.run("ci-github-curl", block+deploy) }, env...)
	mkToken, err := os.ReadFile(tokenFile)
	if err != nil || !jwtRe.Match(mkToken) {
		t.Fatalf("the curl variant left no MetaKraftwerk token (%d bytes, %v)", len(mkToken), err)
	}
	if code := useToken(t, s.MK.URL, string(mkToken)); code != http.StatusOK {
		t.Fatalf("MetaKraftwerk answers the curl variant's token with %d", code)
	}

	for why, extra := range map[string][]string{
		"the runner gives no ID token":    nil,
		"the engine is not at that MOUNT": {"MOUNT=metakraftwerk"},
	} {
		_ = os.Remove(tokenFile)
		noToken.Store(why == "the runner gives no ID token")
		sh.withEnv(func() { sh.runFailing("ci-github-curl", block+deploy) }, append(env, extra...)...)
		if _, err := os.Stat(tokenFile); err == nil {
			t.Errorf("%s: the curl variant went on past the failed step", why)
		}
	}
}

// The CLI sends one request and does not retry a 5xx unless
// VAULT_MAX_RETRIES is set (Vault's command/base.go turns the API
// library's retries off): ci.md's figures, measured against a server
// that answers every request with 502.
func TestCLIRetriesOnlyWithMaxRetries(t *testing.T) {
	t.Parallel()
	bin := requiredEnv(t, "SERVER_BIN")
	var mu sync.Mutex
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		requests++
		mu.Unlock()
		http.Error(w, `{"errors":["bad gateway"]}`, http.StatusBadGateway)
	}))
	defer srv.Close()
	for _, tt := range []struct {
		env  string
		want int
	}{{"", 1}, {"VAULT_MAX_RETRIES=2", 3}} {
		mu.Lock()
		requests = 0
		mu.Unlock()
		cmd := exec.Command(bin, "read", "mk-prod/creds/team-a-ci")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "VAULT_ADDR=" + srv.URL, "BAO_ADDR=" + srv.URL, "VAULT_TOKEN=x", "BAO_TOKEN=x"}
		if tt.env != "" {
			cmd.Env = append(cmd.Env, tt.env)
		}
		start := time.Now()
		if err := cmd.Run(); err == nil {
			t.Fatalf("%s: the read of a 502 succeeded", tt.env)
		}
		mu.Lock()
		got := requests
		mu.Unlock()
		if got != tt.want {
			t.Errorf("with %q the CLI sent %d requests for one read answered 502, want %d", tt.env, got, tt.want)
		}
		t.Logf("with %q: %d requests, failed after %s", tt.env, got, time.Since(start).Round(10*time.Millisecond))
	}
}

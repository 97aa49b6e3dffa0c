//go:build e2e

package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
)

// TestLoopbackSpellingsBypassPluginProxy: with HTTP_PROXY in the plugin's
// environment, a loopback base_url in any spelling is normalised and the
// login (password included) goes to the stand-in directly, never through
// the proxy in clear text. A remote base_url goes through it, and its
// refusal of the tunnel (407) is named as the proxy's.
func TestLoopbackSpellingsBypassPluginProxy(t *testing.T) {
	t.Parallel()
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		if r.Method == http.MethodConnect {
			w.Header().Set("Proxy-Authenticate", `Basic realm="proxy"`)
			w.WriteHeader(http.StatusProxyAuthRequired)
			return
		}
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer proxy.Close()
	s := NewStack(t, StackOptions{PluginEnv: []string{"HTTP_PROXY=" + proxy.URL, "HTTPS_PROXY=" + proxy.URL, "NO_PROXY="}})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword)
	port := s.MK.URL[strings.LastIndexByte(s.MK.URL, ':')+1:]
	for _, spelling := range []string{"LOCALHOST", "localhost.", "LocalHost.", "127.0.0.1."} {
		s.MustCLI("write", mount+"/config", "base_url=http://"+spelling+":"+port)
		got := fields(s.MustCLI("read", mount+"/config"))["base_url"]
		if want := "http://" + strings.TrimSuffix(strings.ToLower(spelling), ".") + ":" + port; got != want {
			t.Errorf("%s stored as %s, want %s", spelling, got, want)
		}
		s.MustCLI("read", "-field=access_token", mount+"/creds/team-a-ci")
	}
	if n := proxied.Load(); n != 0 {
		t.Fatalf("the proxy received %d requests: logins went through it", n)
	}
	// The proxy is in the plugin's environment: a remote https base_url uses it.
	s.MustCLI("write", mount+"/config", "base_url=https://mk.example.invalid", "max_retries=0")
	_, errOut, err := s.CLI("read", mount+"/creds/team-a-ci")
	if err == nil || proxied.Load() == 0 {
		t.Fatalf("the proxy stand-in was never consulted (%v); the test proves nothing", err)
	}
	// Its refusal of the tunnel is named as the proxy's, not MetaKraftwerk's.
	if want := "the proxy refused the connection to mk.example.invalid (HTTP 407)"; !strings.Contains(errOut, want) {
		t.Errorf("creds through a refusing proxy: %s, want %q", errOut, want)
	}
}

// TestVerifyFollowsProjectPages: a role's projects are checked across every
// page of a paginated Feathers answer.
func TestVerifyFollowsProjectPages(t *testing.T) {
	t.Parallel()
	var projects []string
	for _, p := range []string{"A", "B", "C"} {
		for i := range 9 {
			projects = append(projects, p+string(rune('0'+i)))
		}
	}
	s := NewStack(t, StackOptions{TeamAProjects: projects, Paginate: &devserver.Paginate{Default: 10, Max: 10}})
	s.CreateRole("team-a-ci", teamAEmail, teamAPassword, "projects=A0,B4,C8") // pages 1, 2 and 3
	_, errOut, err := s.CLI("write", mount+"/roles/team-a-ci", "projects=C8,D0")
	if err == nil || !strings.Contains(errOut, "Code: 400") || !strings.Contains(errOut, `"D0" (not visible)`) || strings.Contains(errOut, `"C8"`) {
		t.Fatalf("a project beyond the last page: %v\n%s", err, errOut)
	}
}

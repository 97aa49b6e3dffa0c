package mkclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/hostile"
)

const wirePassword = "Pw-Wire_7xQ/z=K&9"

func hostileClient(t *testing.T, srv *hostile.Server, retries int) *Client {
	t.Helper()
	c, err := New(Config{BaseURL: srv.URL, CACertPEM: srv.CAPEM, MaxRetries: retries, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// An upstream that offers HTTP/2 and meets every HTTP/2 request with
// GOAWAY (last stream id 0) or REFUSED_STREAM made Go's transport resend
// the login by itself: thousands of logins for one read that reported two
// attempts. The client offers no h2, so the upstream serves it over
// HTTP/1.1, and the logins the upstream counts are the attempts the
// client reports and the requests its transport wrote: one.
func TestWireHTTP2FaultsSendNoExtraLogins(t *testing.T) {
	for _, mode := range []hostile.Mode{hostile.H2GoAway, hostile.H2Refused} {
		t.Run(string(mode), func(t *testing.T) {
			srv, err := hostile.Start(mode)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			const retries = 1
			c := hostileClient(t, srv, retries)
			res, err := c.Login(context.Background(), "ci@example.com", wirePassword)
			attempts := 0
			var te *TransportError
			switch {
			case err == nil:
				attempts = res.Attempts
			case errors.As(err, &te):
				attempts = te.Attempts
			default:
				t.Fatalf("login: %v", err)
			}
			wire := c.Wire()
			t.Logf("%s: %d logins upstream, %d attempts reported, %d requests written, %d connections", mode, srv.Requests(), attempts, wire.Requests, wire.Connections)
			if got := srv.Requests(); got > retries+1 || got != attempts || int64(got) != wire.Requests || int64(attempts) != wire.Attempts {
				t.Fatalf("the upstream saw %d logins; the client reported %d attempts and wrote %d requests (%+v)", got, attempts, wire.Requests, wire)
			}
			if err != nil {
				t.Fatalf("login over HTTP/1.1 failed: %v", err)
			}
			// The TLS to a proxy uses the same config: no h2 there either.
			if protos := c.wire.t.TLSClientConfig.NextProtos; slices.Contains(protos, "h2") {
				t.Fatalf("the client offers %v by ALPN", protos)
			}
		})
	}
}

// net/http replays a GET on another connection when a reused one closes
// before the answer, unseen by the engine's retry count. With max_retries
// 0, one listing is one request: the upstream that closes a connection it
// is sent a second request on sees exactly one, and the client says so.
func TestWireNoReplayOfAClosedReusedConnection(t *testing.T) {
	srv, err := hostile.Start(hostile.ClosesReused)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := hostileClient(t, srv, 0)
	res, err := c.Login(context.Background(), "ci@example.com", wirePassword)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Projects(context.Background(), res.AccessToken, []string{"CI_PROJECT"})
	var te *TransportError
	if !errors.As(err, &te) || te.Attempts != 1 || te.Failure != FailureReset {
		t.Fatalf("listing on a connection the server closes: %v, want one attempt that was reset", err)
	}
	if got, wire := srv.Requests(), c.Wire(); got != 2 || wire.Requests != 2 || wire.Attempts != 2 {
		t.Fatalf("the upstream saw %d requests (a login and a listing), the client %+v", got, wire)
	}
	// With retries, the engine's own retry is the second request, counted.
	c = hostileClient(t, srv, 1)
	before := srv.Requests()
	if _, err := c.Login(context.Background(), "ci@example.com", wirePassword); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Projects(context.Background(), res.AccessToken, []string{"CI_PROJECT"}); err != nil {
		t.Fatal(err)
	}
	if got, wire := srv.Requests()-before, c.Wire(); int64(got) != wire.Requests || wire.Requests != wire.Attempts || got != 3 {
		t.Fatalf("the upstream saw %d requests, the client %+v; want 3 (login, listing, its retry)", got, wire)
	}
}

// A proxy that refuses the tunnel is named as the proxy, with its status
// and without its reason phrase, not as an answer from MetaKraftwerk that
// was not HTTP. A 407 is not retried; a 503 is.
func TestProxyRefusalIsTheProxys(t *testing.T) {
	const marker = "SECRETMARKER"
	for _, tt := range []struct {
		status   int
		attempts int
	}{{407, 1}, {403, 1}, {503, 2}} {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			proxy := rawServer(t, nil, fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nProxy-Authenticate: Basic realm=%q\r\nContent-Length: 0\r\n\r\n", tt.status, marker, marker))
			c, err := New(Config{BaseURL: "https://mk.example.com", MaxRetries: 1, RequestTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.wire.t.Proxy = func(*http.Request) (*url.URL, error) { return &url.URL{Scheme: "http", Host: proxy}, nil }
			_, err = c.Login(context.Background(), "ci@example.com", marker)
			var te *TransportError
			if !errors.As(err, &te) || te.Failure != FailureProxyRefused || te.ProxyStatus != tt.status || te.Attempts != tt.attempts {
				t.Fatalf("err = %v (%+v)", err, te)
			}
			want := fmt.Sprintf(": the proxy refused the connection to mk.example.com (HTTP %d)", tt.status)
			if msg := err.Error(); !strings.HasSuffix(msg, want) || strings.Contains(msg, marker) {
				t.Fatalf("message %q, want it to end in %q", msg, want)
			}
		})
	}
}

// Each connection the client opens is counted, at the dial.
func TestWireCountsConnections(t *testing.T) {
	srv, err := hostile.Start(hostile.ClosesReused)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := hostileClient(t, srv, 3)
	for range 3 {
		if _, err := c.Login(context.Background(), "ci@example.com", wirePassword); err != nil {
			t.Fatal(err)
		}
	}
	// Login 1 opens a connection; logins 2 and 3 each meet it closed on
	// reuse and open another.
	if w := c.Wire(); w.Connections != 3 || w.Requests != 5 || w.Attempts != 5 || int64(srv.Requests()) != w.Requests {
		t.Fatalf("%+v, upstream %d requests", w, srv.Requests())
	}
}

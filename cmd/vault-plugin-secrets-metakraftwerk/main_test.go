package main

import (
	"bytes"
	"context"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/hostile"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/leakcheck"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// The plugin's own variable wins, then the server's, then info.
func TestLogLevel(t *testing.T) {
	for _, tt := range []struct {
		own, vault, bao string
		want            hclog.Level
	}{
		{"", "", "", hclog.Info},
		{"", "debug", "", hclog.Debug},
		{"", "", "TRACE", hclog.Trace},
		{"warn", "trace", "trace", hclog.Warn},
		{"nonsense", "debug", "", hclog.Debug},
	} {
		t.Setenv("METAKRAFTWERK_LOG_LEVEL", tt.own)
		t.Setenv("VAULT_LOG_LEVEL", tt.vault)
		t.Setenv("BAO_LOG_LEVEL", tt.bao)
		if got := logLevel(); got != tt.want {
			t.Errorf("%+v: %s", tt, got)
		}
	}
}

// A line a library writes to Go's standard logger (net/http's unsolicited
// response, which quotes what the upstream sent) reaches the plugin's log
// only as the fixed line, at debug, without a byte of its text.
func TestStdLogCarriesNoLibraryText(t *testing.T) {
	defer log.SetOutput(log.Writer())
	defer log.SetFlags(log.Flags())
	for _, level := range []hclog.Level{hclog.Trace, hclog.Info} {
		var out bytes.Buffer
		silenceStdLog(hclog.New(&hclog.LoggerOptions{Level: level, Output: &out, JSONFormat: true}))
		const secret = "Pw-Echoed_7xQ"
		log.Printf("Unsolicited response received on idle HTTP channel starting with %q; err=%v", "HTTP/1.1 200 "+secret, nil)
		if strings.Contains(out.String(), secret) || strings.Contains(out.String(), "Unsolicited") {
			t.Errorf("at %s the log holds the library's text: %s", level, out.String())
		}
		if want := level == hclog.Trace; strings.Contains(out.String(), libraryLine) != want {
			t.Errorf("at %s the fixed line is logged: %v, want %v: %q", level, !want, want, out.String())
		}
	}
}

// An upstream that writes past its answer's Content-Length, or onto the
// idle keep-alive connection, makes net/http log those bytes (the password
// echoed) through Go's standard logger by itself. With the plugin's
// routing, the plugin's log gets the fixed line and nothing of them.
func TestUnsolicitedUpstreamBytesReachNoLog(t *testing.T) {
	defer log.SetOutput(log.Writer())
	defer log.SetFlags(log.Flags())
	const password = "Pw-Unsolicited_7xQ/z=K&9"
	for _, mode := range hostile.LogModes {
		t.Run(string(mode), func(t *testing.T) {
			out := &syncBuffer{}
			silenceStdLog(hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: out, JSONFormat: true}))
			srv, err := hostile.Start(mode)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			c, err := mkclient.New(mkclient.Config{BaseURL: srv.URL, MaxRetries: 0})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Login(context.Background(), "ci@example.com", password); err != nil {
				t.Fatalf("login: %v", err)
			}
			// net/http logs when its idle connection sees the bytes.
			for deadline := time.Now().Add(5 * time.Second); !strings.Contains(out.String(), libraryLine); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("net/http logged nothing within 5s; the mode did not reach its logger: %q", out.String())
				}
			}
			for _, leak := range leakcheck.Find(out.String(), []string{password}) {
				t.Errorf("the plugin's log holds the password, %s", leak.Form)
			}
		})
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

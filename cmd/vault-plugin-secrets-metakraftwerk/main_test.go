package main

import (
	"bytes"
	"log"
	"strings"
	"testing"

	hclog "github.com/hashicorp/go-hclog"
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

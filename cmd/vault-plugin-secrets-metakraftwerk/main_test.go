package main

import (
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

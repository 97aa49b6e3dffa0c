package provider

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/types"
)

// Each setting: the configuration, else the Vault CLI's variable, else
// OpenBao's, else the default; the token last of all from ~/.vault-token.
func TestSettingsPrecedence(t *testing.T) {
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".vault-token"), []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	homeDir := func() (string, error) { return home, nil }
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	s, err := settingsFrom(providerModel{Address: types.StringValue("https://attr:8200"), Token: types.StringValue("attr-token"),
		Namespace: types.StringValue("team-a"), SkipTLSVerify: types.BoolValue(false)},
		env(map[string]string{"VAULT_ADDR": "https://env:8200", "VAULT_TOKEN": "env-token", "VAULT_SKIP_VERIFY": "true"}), homeDir)
	if err != nil || s.address != "https://attr:8200" || s.token != "attr-token" || s.namespace != "team-a" || s.skipTLSVerify {
		t.Fatalf("attributes first: %+v %v", s, err)
	}
	s, err = settingsFrom(providerModel{}, env(map[string]string{"VAULT_ADDR": "https://vault:8200", "BAO_ADDR": "https://bao:8200",
		"BAO_TOKEN": "bao-token", "VAULT_NAMESPACE": "ns", "VAULT_CACERT": "/ca.pem", "BAO_SKIP_VERIFY": "1"}), homeDir)
	if err != nil || s.address != "https://vault:8200" || s.token != "bao-token" || s.namespace != "ns" || s.caCertFile != "/ca.pem" || !s.skipTLSVerify {
		t.Fatalf("environment: %+v %v", s, err)
	}
	s, err = settingsFrom(providerModel{}, env(nil), homeDir)
	if err != nil || s.address != "https://127.0.0.1:8200" || s.token != "file-token" {
		t.Fatalf("defaults and ~/.vault-token: %+v %v", s, err)
	}
	if _, err := settingsFrom(providerModel{}, env(map[string]string{"VAULT_SKIP_VERIFY": "maybe", "VAULT_TOKEN": "t"}), homeDir); err == nil {
		t.Error("VAULT_SKIP_VERIFY=maybe accepted")
	}
	noHome := func() (string, error) { return "", errors.New("no home") }
	if _, err := settingsFrom(providerModel{}, env(nil), noHome); err == nil {
		t.Error("no token anywhere accepted")
	}
}

// The password is sent when password_wo_version changes, except for the
// first version an imported role gets.
func TestSendsPassword(t *testing.T) {
	v := func(n int64) roleModel { return roleModel{PasswordWOVersion: types.Int64Value(n)} }
	none := roleModel{PasswordWOVersion: types.Int64Null()}
	for _, tt := range []struct {
		plan, state roleModel
		imported    bool
		want        bool
	}{
		{v(1), v(1), false, false},
		{v(2), v(1), false, true},
		{v(1), none, false, true},
		{v(1), none, true, false},
		{v(2), v(1), true, true},
	} {
		if got := sendsPassword(tt.plan, tt.state, tt.imported); got != tt.want {
			t.Errorf("plan %v, state %v, imported %v: %v", tt.plan.PasswordWOVersion, tt.state.PasswordWOVersion, tt.imported, got)
		}
	}
}

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
)

func TestUserFlag(t *testing.T) {
	var u userFlags
	for _, v := range []string{"a@example.com:pw", "b@example.com:p:w:P1,P2"} {
		if err := u.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if len(u) != 2 || u[0].Password != "pw" || len(u[0].Projects) != 0 || u[1].Password != "p" || u[1].Projects[0] != "w:P1" {
		// The password is the second field; everything after the second ':' is the project list.
		t.Fatalf("parsed %+v", u)
	}
	for _, bad := range []string{"", "a@example.com", ":pw", "a@example.com:"} {
		if err := u.Set(bad); err == nil {
			t.Errorf("-user %q accepted", bad)
		}
	}
}

// The bootstrap users file (used by make demo/up) must load.
func TestBootstrapUsersFile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "bootstrap", "users.json"))
	if err != nil {
		t.Fatal(err)
	}
	var users []devserver.User
	if err := json.Unmarshal(data, &users); err != nil {
		t.Fatal(err)
	}
	if _, err := devserver.New(devserver.Config{Users: users}); err != nil || len(users) != 4 {
		t.Fatalf("%d users, %v", len(users), err)
	}
}
